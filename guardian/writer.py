"""The running system's write side, opened one way for everyone: :func:`open_writer`.

A :class:`Writer` owns what holding a store's writer lock means: the store itself, the
settings of the shipped presets, the rules of every root (:class:`~guardian.rules.policy.
Policy`) and the :class:`~guardian.capture.recorder.Recorder` that turns what is on disk
into versions. The daemon, the CLI when no daemon runs, the ``Batch`` front door, ``guardian
bench`` and the tests all open it here, so they all treat the store, the roots and a broken
rule file the same way:

- ``discover=True`` (``guardian watch``) reads every rule file under the roots now and
  refuses to start with a broken one (exit 2, naming it);
- otherwise the rules are read as paths need them, and a broken rule file met on the way
  refuses the command the same way (``Policy.strict``). The daemon turns strictness off once
  it runs: from then on an edit that breaks a rule file keeps the last good rules, and alerts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from guardian.capture.recorder import Recorder
from guardian.closing import Closing
from guardian.errors import UsageError
from guardian.paths import Root
from guardian.rules.policy import Policy
from guardian.rules.settings import Settings, load_defaults
from guardian.store.db import Store


class Writer(Closing):
    """A store opened for writing, with its roots' rules and its recorder."""

    def __init__(self, store: Store, roots: list[Root], settings: Settings,
                 policy: Policy) -> None:
        self.store = store
        self.settings = settings
        self.policy = policy
        self.recorder = Recorder(store, roots, settings, policy=policy)

    @property
    def roots(self) -> dict[int, Root]:
        return self.recorder.roots

    def close(self) -> None:
        self.recorder.close()
        from guardian.rules import leanform

        # The rule files read, in the form an agent hook's lean path reads them (it cannot
        # afford tomllib): the next hook without a daemon need not take the full path.
        leanform.save(str(self.store.path), self.policy.loaded())

    def __repr__(self) -> str:
        return f"Writer(store={str(self.store.path)!r}, roots={list(self.roots.values())!r})"


def discover_rules(policy: Policy, roots: list[Root]) -> None:
    """Read every rule file under the roots now; a broken one is a UsageError naming it (and
    how many more there are)."""
    from guardian.rules.ignore import IgnoreMatcher

    errors: list[str] = []
    for r in roots:
        matcher = IgnoreMatcher(r.bpath)
        errors += policy.rulesets[r.id].discover(
            lambda rel, m=matcher: m.dir_ignored(os.fsencode(rel)))
    if errors:
        more = f" (and {len(errors) - 1} more rule file errors)" if len(errors) > 1 else ""
        raise UsageError(errors[0] + more)


def writer_of(store: Store, roots: list[Path] | None = None, *, discover: bool = False,
              settings: Settings | None = None) -> Writer:
    """A :class:`Writer` over a store already opened for writing (the caller closes the
    store; ``with`` closes the writer): ``roots`` are added to it first (idempotent)."""
    root_objs = (store.add_roots(roots) if roots else []) or store.roots()
    policy = Policy({r.id: r for r in root_objs}, strict=True)
    if discover:
        discover_rules(policy, root_objs)
    return Writer(store, root_objs, settings or load_defaults(), policy)


@contextlib.contextmanager
def open_writer(store_path: Path, roots: list[Path] | None = None, *, create: bool = False,
                discover: bool = False, lock_timeout: float = 0.0) -> Iterator[Writer]:
    """Take the writer lock of the store at ``store_path`` and yield its :class:`Writer`.

    ``create`` makes the store if there is none (only ``watch``, ``snapshot`` and ``apply``
    may: see ``Store.open``); ``roots`` are added to it; ``discover`` checks every rule file
    at once (see the module docstring). Everything is closed when the block ends.
    """
    with Store.open(store_path, write=True, create=create, lock_timeout=lock_timeout) as store, \
            writer_of(store, roots, discover=discover) as w:
        yield w
