"""Policy: what the rules of a store's roots say about a path.

One object per store writer. It owns a :class:`~guardian.rules.rulefiles.RuleSet` per root
and answers the questions capture, the daemon, batch writes and hooks ask: is this path
ignored, how big may it be, which validators apply, is it protected. (What the validators
then say of a content is :mod:`guardian.validation.check`.)

``strict`` is how a one-shot command treats a broken rule file: it refuses (exit 2, the
file's ``file:line: key: what is wrong``), as ``guardian watch`` does at start; the daemon,
once running, keeps the last good rules of a file edited into a broken one, and alerts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from guardian.errors import RuleError
from guardian.paths import Root
from guardian.rules.rulefiles import RULE_FILE, Effective, RuleFile, RuleSet

A = TypeVar("A")


@dataclass
class Policy:
    """The rules of every root of a store, loaded on demand."""

    roots: Mapping[int, Root]
    rulesets: dict[int, RuleSet] = field(default_factory=dict)
    #: Refuse a broken rule file met on the way (one-shot commands) instead of going on
    #: with the last good rules (the running daemon).
    strict: bool = False

    def __post_init__(self) -> None:
        for rid, root in self.roots.items():
            self.rulesets[rid] = RuleSet(str(root.path))

    def effective(self, root_id: int, relpath: bytes) -> Effective:
        return self._ask(root_id, RuleSet.effective, relpath)

    def ignored(self, root_id: int, relpath: bytes) -> bool:
        return self._ask(root_id, RuleSet.ignored, relpath)

    def ignores_in(self, root_id: int, dirrel: bytes) -> bool:
        """Whether a rule file's ``ignore`` glob is in force in directory ``dirrel``."""
        return self._ask(root_id, RuleSet.ignores_in, dirrel)

    def _ask(self, root_id: int, question: Callable[[RuleSet, str], A], relpath: bytes) -> A:
        """Ask a root's rules about a path; strict, a broken rule file met on the way (read
        for this question) refuses it."""
        rs = self.rulesets[root_id]
        answer = question(rs, os.fsdecode(relpath))
        if self.strict and rs.errors:
            raise RuleError(next(iter(rs.errors.values())))
        return answer

    def loaded(self) -> list[RuleFile]:
        """Every rule file loaded so far, in every root."""
        return [rf for rs in self.rulesets.values() for rf in rs.loaded()]

    def discover(self, skip_dir: Any = None) -> list[str]:
        """Load every rule file now; their errors (start-up refuses to run with any)."""
        errors: list[str] = []
        for rs in self.rulesets.values():
            errors += rs.discover(skip_dir)
        return errors

    def rule_file_changed(self, root_id: int, relpath: bytes) -> str | None:
        """Reload after a change to a rule file; its error (the last good rules stay)."""
        rel = os.fsdecode(relpath)
        directory = rel.rpartition("/")[0] if "/" in rel else ""
        return self.rulesets[root_id].reload(directory)

    @staticmethod
    def is_rule_file(relpath: bytes) -> bool:
        return relpath == RULE_FILE.encode() or relpath.endswith(b"/" + RULE_FILE.encode())
