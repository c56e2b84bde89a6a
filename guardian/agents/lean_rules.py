"""The rules in force for a path, worked out as guardian.rules.rulefiles.RuleSet does, from
the lean forms (:mod:`guardian.rules.leanform`) of the rule files on its way: what the
lean hook needs to act as the full path would without tomllib or the rules engine.

A rule file with no saved form (new or edited since the full path last read it), one that
cannot be read as RuleSet reads it, or more globs in force than RuleSet applies: Unusual, and
the full path decides (and saves the form for the next call).
"""

from __future__ import annotations

import os

from guardian.rules import leanform
from guardian.rules.globs import Glob, compile_glob
from guardian.rules.under import under as _under
from guardian.store.lean_write import Unusual

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:
    from _sha256 import sha256  # type: ignore[import-not-found]  # hashlib costs ~5 ms
except ImportError:  # pragma: no cover
    from hashlib import sha256

RULE_FILE = ".guardian.toml"                 # guardian.rules.rulefiles.RULE_FILE
MAX_RULE_BYTES = 256 * 1024                  # guardian.rules.rulefiles.MAX_FILE_BYTES
MAX_GLOBS_IN_FORCE = 10000                   # guardian.rules.rulefiles.MAX_GLOBS_IN_FORCE
#: What the shipped default rules (rules/default.toml, digest checked by the lean path) set
#: of the keys a hook acts on; tests/test_hook_lean.py holds them to that file.
DEFAULT_SETTINGS: dict[str, Any] = {"validators": [["auto", {}]], "on_invalid": "record",
                                    "max_file_size": 50 * 1024 * 1024}
DEFAULT_GLOBS = 1  # its one rule's "**"

#: One rule: its globs (None: "**", every path), its settings.
_Rule = tuple["tuple[Glob, ...] | None", "dict[str, Any]"]
#: One rule file: its directory, rules, ignore globs, how many globs it counts.
_File = tuple[str, "list[_Rule]", "list[Glob]", int]


def _read(path: str) -> bytes | None:
    """rulefiles.read_rule_file: None where it finds no rule file (absent, a symlink, not a
    regular file); Unusual where it raises (unreadable, too big)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if os.path.islink(path):
            return None
        raise Unusual(f"a rule file cannot be read: {e}") from None
    try:
        st = os.fstat(fd)
        if (st.st_mode & 0o170000) != 0o100000:
            return None
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_RULE_BYTES:
            chunk = os.read(fd, MAX_RULE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        raise Unusual("a rule file cannot be read") from None
    finally:
        os.close(fd)
    if size > MAX_RULE_BYTES:
        raise Unusual("a rule file over the size limit")
    return b"".join(chunks)


class LeanRules:
    """The rule files of one root, read on demand (as RuleSet, per directory)."""

    def __init__(self, store_dir: str, root: str) -> None:
        self.store_dir = store_dir
        self.root = root
        self._files: dict[str, _File | None] = {}
        self._chains: dict[str, tuple[_File, ...]] = {}

    def _file(self, d: str) -> _File | None:
        if d in self._files:
            return self._files[d]
        path = os.path.join(self.root, d, RULE_FILE) if d else os.path.join(self.root,
                                                                              RULE_FILE)
        data = _read(path)
        got: _File | None = None
        if data is not None:
            form = leanform.load(self.store_dir, sha256(data).hexdigest())
            if form is None:
                raise Unusual("a rule file the full path has not read as it is")
            for source, digest in form["sources"].items():  # a preset it extends
                if sha256(_read(source) or b"").hexdigest() != digest:
                    raise Unusual("a preset changed")
            try:
                rules: list[_Rule] = []
                count = 0
                for r in form["rules"]:
                    globs = tuple(compile_glob(g) for g in r["globs"])
                    count += len(globs)
                    always = any(g == "**" for g in r["globs"])
                    rules.append((None if always else globs, r["set"]))
                ignore = [compile_glob(g) for g in form["ignore"]]
            except Exception:
                raise Unusual("a lean form that does not compile") from None
            got = (d, rules, ignore, count + len(ignore))
        self._files[d] = got
        return got

    def chain(self, d: str) -> tuple[_File, ...]:
        """The rule files in force in directory ``d``, outermost first (no recursion)."""
        cached = self._chains.get(d)
        if cached is not None:
            return cached
        pending = []
        cur: str | None = d
        while cur is not None and cur not in self._chains:
            pending.append(cur)
            cur = cur.rpartition("/")[0] if cur else None
        chain = self._chains[cur] if cur is not None else ()
        for dd in reversed(pending):
            f = self._file(dd)
            if f is not None:
                chain = (*chain, f)
                if DEFAULT_GLOBS + sum(x[3] for x in chain) > MAX_GLOBS_IN_FORCE:
                    raise Unusual("more globs in force than RuleSet applies")
            self._chains[dd] = chain
        return chain

    def effective(self, relpath: str) -> dict[str, Any]:
        """RuleSet.effective's settings (the keys a hook acts on), by value."""
        settings = dict(DEFAULT_SETTINGS)
        for base, rules, _ignore, _n in self.chain(relpath.rpartition("/")[0]):
            rel = _under(base, relpath)
            if rel is None:
                continue
            for globs, values in rules:
                if globs is None or any(g.match(rel) for g in globs):
                    settings.update(values)
        return settings

    def ignored(self, relpath: str) -> bool:
        """RuleSet.ignored: an ``ignore`` glob of a rule file in force matches ``relpath``."""
        for base, _rules, ignore, _n in self.chain(relpath.rpartition("/")[0]):
            rel = _under(base, relpath)
            if rel is not None and any(g.match(rel) for g in ignore):
                return True
        return False
