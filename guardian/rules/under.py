"""Where a path is seen from a rule file's directory: a module of its own, so the agent
hook's lean path (guardian.agents.lean_rules) and the rules engine share it without the
engine's imports."""

from __future__ import annotations


def under(base: str, relpath: str) -> str | None:
    """``relpath`` relative to directory ``base`` ("" = the root), or None if outside it."""
    if not base:
        return relpath
    if relpath.startswith(base) and relpath[len(base):len(base) + 1] == "/":
        return relpath[len(base) + 1:]
    return None
