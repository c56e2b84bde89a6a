"""Rule files: which validators apply to a path, what to do when a write is invalid, what is
protected, ignored, kept.

Discovery order for a path ``a/b/c.json`` under a root (later wins, per key, like
``.editorconfig``):

1. the shipped preset ``default.toml`` (applies everywhere);
2. ``ROOT/.guardian.toml``, then ``ROOT/a/.guardian.toml``, then ``ROOT/a/b/.guardian.toml``;
   a file that says ``extends = "strict"`` first applies that preset's rules, relative to its
   own directory;
3. within a file, rules apply in order, and every rule whose ``paths`` globs match sets its keys.

So the nearest file wins per key, and the last matching rule within a file wins per key.
Errors name the file, the line and the key, and suggest the closest valid name.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardian.errors import UsageError
from guardian.globs import GlobError, compile_glob
from guardian.settings import parse_size, presets_dir

RULE_FILE = ".guardian.toml"
ON_INVALID = ("record", "alert", "revert")
PRESETS = ("default", "strict", "python")

#: Keys of a ``[[rule]]`` table, with what each accepts (also the JSON Schema's source).
RULE_KEYS: dict[str, str] = {
    "paths": "a list of globs, relative to the rule file's directory",
    "validators": 'a list of validator names ("auto", "json", …) or tables '
                  '({ command = [...], timeout = 10 } or { schema = "file.json" })',
    "on_invalid": 'one of "record", "alert", "revert"',
    "protect": "true or false: any change or deletion is reverted",
    "settle_ms": "a whole number of milliseconds",
    "settle_cap_ms": "a whole number of milliseconds",
    "max_file_size": "a size such as 50MiB",
    "keep_versions": "a whole number, at least 1",
    "keep_days": "a number of days",
    "max_reverts_per_minute": "a whole number: after that many reverts of one path in a "
                              "minute, Guardian stops reverting it and alerts",
    "options": "a table of validator options, e.g. { json = { duplicate_keys = \"allow\" } }",
}
TOP_KEYS = {"extends": "a preset name: " + ", ".join(PRESETS),
            "ignore": "a list of globs of paths not to record",
            "rule": "an array of [[rule]] tables",
            "alerts": "a table of alert thresholds and sinks (a root's own rule file only; "
                      "see guardian.observe.thresholds)"}
VALIDATOR_NAMES = ("auto", "python", "json", "yaml", "toml", "ini", "markdown", "text")
VALIDATOR_TABLE_KEYS = ("command", "timeout", "schema", "name")


class RuleError(UsageError):
    """A rule file is wrong; the message is ``file:line: key: what is wrong``."""


@dataclass(frozen=True)
class Origin:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class ValidatorSpec:
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    #: The rule file a command came from: commands run only once that file is trusted.
    source: str | None = None
    source_digest: str | None = None

    def describe(self) -> str:
        if self.name == "command":
            return "command " + " ".join(map(str, self.options.get("command", [])))
        if self.name == "schema":
            return f"schema {self.options.get('schema')}"
        return self.name


@dataclass(frozen=True)
class Rule:
    base: str                 # directory the globs are relative to ("" = the root)
    globs: tuple[str, ...]
    settings: Mapping[str, tuple[Any, Origin]]

    def matches(self, relpath: str) -> bool:
        if self.base:
            if not relpath.startswith(self.base + "/"):
                return False
            relpath = relpath[len(self.base) + 1:]
        # "**" (the default rule's) matches every path: no regex needed.
        return any(g == "**" or compile_glob(g).match(relpath) for g in self.globs)


@dataclass(frozen=True)
class RuleFile:
    path: str
    base: str
    rules: tuple[Rule, ...]
    ignore: tuple[tuple[str, Origin], ...]
    digest: str


@dataclass(frozen=True)
class Effective:
    """The settings that apply to one path, each with where it came from."""

    relpath: str
    settings: Mapping[str, tuple[Any, Origin]]
    files: tuple[str, ...]

    def get(self, key: str, default: Any = None) -> Any:
        v = self.settings.get(key)
        return default if v is None else v[0]

    @property
    def validators(self) -> list[ValidatorSpec]:
        specs: list[ValidatorSpec] = self.get("validators", [])
        return specs

    @property
    def on_invalid(self) -> str:
        return str(self.get("on_invalid", "record"))

    @property
    def protected(self) -> bool:
        return bool(self.get("protect", False))

    def to_json(self) -> dict[str, Any]:
        def show(v: Any) -> Any:
            if isinstance(v, list):
                return [show(x) for x in v]
            if isinstance(v, ValidatorSpec):
                d: dict[str, Any] = {"name": v.name, **dict(v.options)}
                return d
            return v

        return {
            "path": self.relpath,
            "settings": {k: {"value": show(v), "from": str(o)}
                         for k, (v, o) in sorted(self.settings.items())},
            "rule_files": list(self.files),
        }


# ----------------------------------------------------------------------------- parsing
def load_rule_file(path: str | Path, base: str, *, data: bytes | None = None) -> RuleFile:
    """Parse and check one rule file; raise RuleError naming file, line and key."""
    path = str(path)
    if data is None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise RuleError(f"{path}: cannot read: {e.strerror or e}") from None
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RuleError(f"{path}: not UTF-8 (byte {e.start})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RuleError(f"{path}:{_toml_line(str(e))}: {_strip_pos(str(e))}") from None
    locator = _Locator(path, text)
    rules: list[Rule] = []
    ignore: list[tuple[str, Origin]] = []
    for key in doc:
        if key not in TOP_KEYS:
            raise RuleError(locator.error(None, key, _unknown(key, [*TOP_KEYS, *RULE_KEYS])))
    if "alerts" in doc:
        _check_alerts(doc["alerts"], path, text, base)
    extends = doc.get("extends")
    if extends is not None:
        if not isinstance(extends, str) or extends not in PRESETS:
            hint = _closest(str(extends), PRESETS)
            raise RuleError(locator.error(None, "extends",
                                          f"unknown preset {extends!r}{hint}; "
                                          f"presets: {', '.join(PRESETS)}"))
        preset = load_preset(extends)
        rules.extend(Rule(_join(base, r.base), r.globs, r.settings) for r in preset.rules)
        ignore.extend(preset.ignore if not base else
                      ((_join(base, g), o) for g, o in preset.ignore))
    raw_ignore = doc.get("ignore", [])
    if not isinstance(raw_ignore, list) or not all(isinstance(g, str) for g in raw_ignore):
        raise RuleError(locator.error(None, "ignore", "expected a list of globs"))
    for g in raw_ignore:
        _check_glob(locator, None, "ignore", g)
        ignore.append((_join(base, g.lstrip("/")), locator.origin(None, "ignore")))
    raw_rules = doc.get("rule", [])
    if not isinstance(raw_rules, list):
        raise RuleError(locator.error(None, "rule", "use [[rule]] tables"))
    for i, table in enumerate(raw_rules):
        rules.append(_parse_rule(locator, i, table, base, path, digest))
    return RuleFile(path, base, tuple(rules), tuple(ignore), digest)


def _check_alerts(value: Any, path: str, text: str, base: str) -> None:
    """The ``[alerts]`` table is guardian.observe's: checked by it, reported like ours."""
    from guardian.observe.thresholds import AlertsError, check_table

    try:
        check_table(value, path, text, base)
    except AlertsError as e:
        raise RuleError(str(e)) from None


def _parse_rule(loc: _Locator, i: int, table: Any, base: str, path: str, digest: str) -> Rule:
    if not isinstance(table, dict):
        raise RuleError(loc.error(i, "rule", "expected a table"))
    for key in table:
        if key not in RULE_KEYS:
            raise RuleError(loc.error(i, key, _unknown(key, list(RULE_KEYS))))
    if "paths" not in table:
        raise RuleError(loc.error(i, "paths", "missing: every [[rule]] needs paths = [...]"))
    globs = table["paths"]
    if isinstance(globs, str):
        globs = [globs]
    if not isinstance(globs, list) or not globs or not all(isinstance(g, str) for g in globs):
        raise RuleError(loc.error(i, "paths", "expected a non-empty list of globs"))
    for g in globs:
        _check_glob(loc, i, "paths", g)
    settings: dict[str, tuple[Any, Origin]] = {}
    for key, value in table.items():
        if key == "paths":
            continue
        origin = loc.origin(i, key)
        settings[key] = (_check_value(loc, i, key, value, path, digest), origin)
    return Rule(base, tuple(g.lstrip("/") for g in globs), settings)


def _check_value(loc: _Locator, i: int, key: str, value: Any, path: str, digest: str) -> Any:
    def bad(expected: str) -> RuleError:
        return RuleError(loc.error(i, key, f"expected {expected}, got {value!r}"))

    if key == "on_invalid":
        if value not in ON_INVALID:
            raise RuleError(loc.error(i, key, f"expected one of {', '.join(ON_INVALID)}, got "
                                              f"{value!r}{_closest(str(value), ON_INVALID)}"))
        return value
    if key == "protect":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if key in ("settle_ms", "settle_cap_ms", "max_reverts_per_minute", "keep_versions"):
        if not isinstance(value, int) or isinstance(value, bool) or value < (
                1 if key == "keep_versions" else 0):
            raise bad("a whole number" + (" of at least 1" if key == "keep_versions" else ""))
        return value
    if key == "keep_days":
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise bad("a number of days")
        return float(value)
    if key == "max_file_size":
        try:
            return parse_size(value, "")
        except UsageError:
            raise bad("a size such as 50MiB") from None
    if key == "options":
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise bad("a table of tables, e.g. { json = { duplicate_keys = \"allow\" } }")
        for name in value:
            if name not in VALIDATOR_NAMES and name not in ("schema", "command"):
                raise RuleError(loc.error(i, key, f"unknown validator {name!r}"
                                                  f"{_closest(name, VALIDATOR_NAMES)}"))
        return value
    if key == "validators":
        if not isinstance(value, list):
            raise bad("a list")
        base_dir = os.path.dirname(path)
        return [_validator_spec(loc, i, v, base_dir, path, digest) for v in value]
    raise AssertionError(key)  # pragma: no cover - RULE_KEYS and this function agree


def _validator_spec(loc: _Locator, i: int, v: Any, base_dir: str, path: str,
                    digest: str) -> ValidatorSpec:
    if isinstance(v, str):
        if v not in VALIDATOR_NAMES:
            raise RuleError(loc.error(i, "validators", f"unknown validator {v!r}"
                                      f"{_closest(v, VALIDATOR_NAMES)}; known: "
                                      f"{', '.join(VALIDATOR_NAMES)}, or a "
                                      "{ command = [...] } / { schema = \"...\" } table"))
        return ValidatorSpec(v)
    if not isinstance(v, dict):
        raise RuleError(loc.error(i, "validators", f"expected a name or a table, got {v!r}"))
    for k in v:
        if k not in VALIDATOR_TABLE_KEYS:
            raise RuleError(loc.error(i, "validators", _unknown(k, list(VALIDATOR_TABLE_KEYS))))
    if "command" in v:
        cmd = v["command"]
        if not isinstance(cmd, list) or not cmd or not all(isinstance(c, str) for c in cmd):
            raise RuleError(loc.error(i, "validators",
                                      "command must be a non-empty list of strings"))
        timeout = v.get("timeout", 10)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            raise RuleError(loc.error(i, "validators", "timeout must be a positive number"))
        return ValidatorSpec("command", {"command": cmd, "timeout": float(timeout)},
                             source=path, source_digest=digest)
    if "schema" in v:
        schema = v["schema"]
        if not isinstance(schema, str):
            raise RuleError(loc.error(i, "validators", "schema must be a file path"))
        return ValidatorSpec("schema", {"schema": os.path.normpath(os.path.join(base_dir,
                                                                                schema))})
    name = v.get("name")
    if name not in VALIDATOR_NAMES:
        raise RuleError(loc.error(i, "validators",
                                  "a validator table needs command = [...], schema = \"...\", "
                                  "or name = \"<validator>\""))
    return ValidatorSpec(str(name), {k: x for k, x in v.items() if k != "name"})


def _check_glob(loc: _Locator, i: int | None, key: str, g: str) -> None:
    try:
        compile_glob(g)
    except GlobError as e:
        raise RuleError(loc.error(i, key, f"bad glob {g!r}: {e}")) from None


def _join(base: str, rel: str) -> str:
    return f"{base}/{rel}" if base and rel else (base or rel)


def _unknown(key: str, valid: list[str]) -> str:
    return f"unknown key {key!r}{_closest(key, valid)}"


def _closest(word: str, valid: Any) -> str:
    close = difflib.get_close_matches(word, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


def _toml_line(msg: str) -> str:
    m = _POS.search(msg)
    return m.group(1) if m else "1"


def _strip_pos(msg: str) -> str:
    return _POS.sub("", msg).strip()


class _Locator:
    """Finds the line of a key in a rule file (tomllib does not report positions)."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.rule_starts = [n for n, line in enumerate(self.lines, 1)
                            if line.strip().startswith("[[rule]]")]

    def line_of(self, rule: int | None, key: str) -> int:
        if rule is None:
            start, end = 1, (self.rule_starts[0] if self.rule_starts else len(self.lines) + 1)
        else:
            if rule >= len(self.rule_starts):
                return self.rule_starts[-1] if self.rule_starts else 1
            start = self.rule_starts[rule]
            end = (self.rule_starts[rule + 1] if rule + 1 < len(self.rule_starts)
                   else len(self.lines) + 1)
        pat = re.compile(r"^\s*(?:" + re.escape(key) + r'|"' + re.escape(key) + r'")\s*=')
        for n in range(start, end):
            if pat.match(self.lines[n - 1]):
                return n
        return start

    def origin(self, rule: int | None, key: str) -> Origin:
        return Origin(self.path, self.line_of(rule, key))

    def error(self, rule: int | None, key: str, message: str) -> str:
        return f"{self.path}:{self.line_of(rule, key)}: {key}: {message}"


_presets: dict[str, RuleFile] = {}


def load_preset(name: str) -> RuleFile:
    if name not in _presets:
        _presets[name] = load_rule_file(presets_dir() / f"{name}.toml", "")
    return _presets[name]


# ----------------------------------------------------------------------------- resolution
class RuleSet:
    """All rule files of one root, loaded on demand and cached per directory.

    A rule file that fails to load keeps the last good version in force; ``errors`` holds
    the message until the file is fixed (the daemon raises an alert from it).
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self._files: dict[str, RuleFile | None] = {}
        self.errors: dict[str, str] = {}
        # Per directory: the rules and ignore globs that apply there (every lookup on the hot
        # path of a scan would otherwise walk the chain of rule files again).
        self._rules: dict[str, tuple[list[Rule], tuple[str, ...]]] = {}
        self._ignores: dict[str, list[str]] = {}

    def _load_dir(self, d: str) -> RuleFile | None:
        if d in self._files:
            return self._files[d]
        path = os.path.join(self.root, d, RULE_FILE) if d else os.path.join(self.root, RULE_FILE)
        rf: RuleFile | None = None
        if os.path.isfile(path) and not os.path.islink(path):
            try:
                rf = load_rule_file(path, d)
                self.errors.pop(path, None)
            except RuleError as e:
                self.errors[path] = str(e)
                rf = self._files.get(d)  # the last good rules stay in force
        self._files[d] = rf
        return rf

    def reload(self, d: str) -> str | None:
        """Re-read the rule file of directory ``d``; return its error, if any."""
        old = self._files.pop(d, None)
        self._rules.clear()
        self._ignores.clear()
        path = os.path.join(self.root, d, RULE_FILE) if d else os.path.join(self.root, RULE_FILE)
        if old is not None:
            self._files[d] = old  # keep it while loading: a broken edit leaves it in force
        try:
            rf = load_rule_file(path, d) if os.path.isfile(path) else None
        except RuleError as e:
            self.errors[path] = str(e)
            return str(e)
        self.errors.pop(path, None)
        self._files[d] = rf
        return None

    def chain(self, relpath: str) -> Iterator[RuleFile]:
        yield load_preset("default")
        parts = relpath.split("/")[:-1]
        d = ""
        for depth in range(len(parts) + 1):
            rf = self._load_dir(d)
            if rf is not None:
                yield rf
            if depth < len(parts):
                d = f"{d}/{parts[depth]}" if d else parts[depth]

    def effective(self, relpath: str) -> Effective:
        d = relpath.rpartition("/")[0]
        cached = self._rules.get(d)
        if cached is None:
            chain = list(self.chain(relpath))
            cached = ([r for rf in chain for r in rf.rules], tuple(rf.path for rf in chain))
            self._rules[d] = cached
        settings: dict[str, tuple[Any, Origin]] = {}
        for rule in cached[0]:
            if rule.matches(relpath):
                settings.update(rule.settings)
        return Effective(relpath, settings, cached[1])

    def ignored(self, relpath: str) -> bool:
        d = relpath.rpartition("/")[0]
        globs = self._ignores.get(d)
        if globs is None:
            globs = self._ignores[d] = [g for rf in self.chain(relpath) for g, _o in rf.ignore]
        return any(compile_glob(g).match(relpath) for g in globs)

    def discover(self, skip_dir: Any = None) -> list[str]:
        """Load every rule file under the root now; return their errors (for start-up)."""
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel
            dirnames[:] = [n for n in dirnames
                           if n != ".git" and not (skip_dir and skip_dir(os.path.join(rel, n)))]
            if RULE_FILE in filenames:
                self._load_dir(rel)
        self._rules.clear()
        self._ignores.clear()
        return list(self.errors.values())
