"""A rule file's rules in the form the agent hook's lean path reads: JSON, one file per rule
file's SHA-256, written by the full parser into the store.

Parsing a ``.guardian.toml`` costs tomllib's import (~3 ms, it compiles its regular
expressions) and the rules engine's (~8 ms, dataclasses and inspect): more than a hook's
whole budget. The full path (:mod:`guardian.agents.hook`) saves here the rules of every file
it loaded; the lean path (:mod:`guardian.agents.lean_rules`) reads a rule file's bytes,
hashes them and takes the form saved under that digest, or steps aside when there is none.
The key is the content, not a stat: an edit of the file is a miss at once, however fast.
Settings an agent hook does not use (settle, retention) are left out; a rule file whose
rules come from a preset names the preset file and its digest, so an upgrade of Guardian that
changes the preset is a miss too.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from guardian.rules.rulefiles import RuleFile

#: Bumped when the form changes (older forms are then never read).
FORMAT = 1
CACHE_DIR = "rules-cache"
#: The settings an agent hook acts on (guardian.agents.handler): the rest are not kept.
KEYS = ("validators", "on_invalid", "protect", "fail", "max_file_size", "options")


def path_of(store_dir: str, digest: str) -> str:
    return os.path.join(store_dir, CACHE_DIR, f"v{FORMAT}-{digest}.json")


def form_of(rf: RuleFile) -> dict[str, Any] | None:
    """The lean form of a loaded rule file; None if it holds what JSON cannot (a TOML date
    in a validator's options)."""
    sources: dict[str, str] = {}

    def source(file: str) -> None:
        if file != rf.path and file not in sources:
            import hashlib

            from guardian.rules.rulefiles import read_rule_file  # a preset: its digest

            data = read_rule_file(file)
            sources[file] = hashlib.sha256(data or b"").hexdigest()

    rules = []
    for r in rf.rules:
        if r.base != rf.base:
            return None  # not what a rule file's own rules and its preset's look like
        settings: dict[str, Any] = {}
        for key, (value, origin) in r.settings.items():
            source(origin.file)
            if key in KEYS:
                settings[key] = ([[v.name, dict(v.options)] for v in value]
                                 if key == "validators" else value)
        rules.append({"globs": [g.text for g in r.globs], "set": settings})
    ignore = []
    for g in rf.ignore:
        if g.base != rf.base:
            return None
        source(g.origin.file)
        ignore.append(g.glob.text)
    form = {"v": FORMAT, "digest": rf.digest, "sources": sources, "ignore": ignore,
            "rules": rules}
    import json

    try:
        json.dumps(form)
    except (TypeError, ValueError):
        return None
    return form


def save(store_dir: str, files: Iterable[RuleFile]) -> None:
    """Save the lean form of each rule file that has none yet (atomically: a reader finds a
    whole form or none; not durably: a lost form is a miss, and the full path saves it
    again). Errors are ignored: the cache only ever saves time."""
    for rf in files:
        path = path_of(store_dir, rf.digest)
        if os.path.exists(path):
            continue
        try:
            form = form_of(rf)
        except Exception:  # noqa: S112 (a preset unreadable now: no form, the full path reads it)
            continue
        if form is None:
            continue
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                import json

                os.write(fd, json.dumps(form, separators=(",", ":")).encode())
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError:
            try:  # noqa: SIM105 (contextlib costs the lean path's import ~0.5 ms)
                os.unlink(tmp)
            except OSError:
                pass


def load(store_dir: str, digest: str) -> dict[str, Any] | None:
    """The lean form saved for the rule file whose SHA-256 is ``digest``, or None."""
    try:
        fd = os.open(path_of(store_dir, digest), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = os.read(fd, 4 << 20)
    except OSError:
        return None
    finally:
        os.close(fd)
    from guardian import wirejson  # the lean hook's path: no json package

    try:
        form = wirejson.loads(raw)
    except ValueError:
        return None
    if not isinstance(form, dict) or form.get("v") != FORMAT or form.get("digest") != digest:
        return None
    return form
