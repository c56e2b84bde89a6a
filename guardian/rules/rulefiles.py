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

import errno
import hashlib
import os
import re
import stat
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from guardian.errors import AlertsError, GlobError, RuleError, UsageError
from guardian.rules.globs import Glob, compile_glob
from guardian.rules.settings import parse_size, presets_dir
from guardian.rules.under import under as _under

RULE_FILE = ".guardian.toml"
ON_INVALID = ("record", "alert", "revert")
BROKEN_IMPORTS = ("refuse", "warn")
PRESETS = ("default", "strict", "python")

# What one rule file may cost: everything in a watched tree is untrusted input, and rules are
# read at start-up and evaluated for every event. Each limit is named in its error message.
#: Largest rule file (tomllib parses ~3 MB/s: about a tenth of a second).
MAX_FILE_BYTES = 256 * 1024
#: Deepest nesting of arrays and tables (tomllib recurses on it; real files need 4).
MAX_NESTING = 32
#: ``[[rule]]`` tables in one file, and globs (``paths`` and ``ignore``) in one file.
MAX_RULES = 1000
MAX_GLOBS = 5000
#: Globs in force for one directory (its rule file and those above it, presets included):
#: every path is matched against all of them.
MAX_GLOBS_IN_FORCE = 10000

#: Keys of a ``[[rule]]`` table, with what each accepts (also the JSON Schema's source).
RULE_KEYS: dict[str, str] = {
    "paths": "a list of globs, relative to the rule file's directory",
    "validators": 'a list of validator names ("auto", "json", …) or tables '
                  '({ command = [...], timeout = 10 } or { schema = "file.json" })',
    "on_invalid": 'one of "record", "alert", "revert"',
    "protect": "true or false: any change or deletion is reverted",
    "fail": 'one of "open", "closed": what an agent hook does with a write it cannot '
            'validate (an internal error, a timeout): let it through, or refuse it',
    "settle_ms": "a whole number of milliseconds",
    "settle_cap_ms": "a whole number of milliseconds",
    "max_file_size": "a size such as 50MiB",
    "keep_versions": "a whole number, at least 1",
    "keep_days": "a number of days",
    "max_reverts_per_minute": "a whole number: after that many reverts of one path in a "
                              "minute, Guardian stops reverting it and alerts",
    "options": "a table of validator options, e.g. { json = { duplicate_keys = \"allow\" } }",
    "broken_imports": 'one of "refuse", "warn": what a batch that breaks an import of a '
                      "matching file gets (guardian.batch.imports)",
}
TOP_KEYS = {"extends": "a preset name: " + ", ".join(PRESETS),
            "ignore": "a list of globs of paths not to record",
            "rule": "an array of [[rule]] tables",
            "alerts": "a table of alert thresholds and sinks (a root's own rule file only; "
                      "see guardian.rules.thresholds)"}
VALIDATOR_NAMES = ("auto", "python", "json", "yaml", "toml", "ini", "markdown", "text")
VALIDATOR_TABLE_KEYS = ("command", "timeout", "stdin", "schema", "name")


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
    globs: tuple[Glob, ...]   # compiled when the rule file is loaded
    settings: Mapping[str, tuple[Any, Origin]]
    #: "**" (the default rule's) matches every path: nothing to run.
    always: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "always", any(g.text == "**" for g in self.globs))

    def matches(self, relpath: str) -> bool:
        rel = _under(self.base, relpath)
        return rel is not None and (self.always or any(g.match(rel) for g in self.globs))


@dataclass(frozen=True)
class IgnoreGlob:
    """One ``ignore`` glob of a rule file: paths it matches are not recorded."""

    base: str
    glob: Glob
    origin: Origin

    def matches(self, relpath: str) -> bool:
        rel = _under(self.base, relpath)
        return rel is not None and self.glob.match(rel)


@dataclass(frozen=True)
class RuleFile:
    path: str
    base: str
    rules: tuple[Rule, ...]
    ignore: tuple[IgnoreGlob, ...]
    digest: str

    @property
    def glob_count(self) -> int:
        return sum(len(r.globs) for r in self.rules) + len(self.ignore)

    @cached_property
    def groups(self) -> tuple[tuple[str, tuple[Rule, ...]], ...]:
        """The rules in order, consecutive ones with the same base together (a path is made
        relative to a base once per group, not once per rule)."""
        out: list[tuple[str, list[Rule]]] = []
        for r in self.rules:
            if out and out[-1][0] == r.base:
                out[-1][1].append(r)
            else:
                out.append((r.base, [r]))
        return tuple((b, tuple(rs)) for b, rs in out)


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
def read_rule_file(path: str) -> bytes | None:
    """The bytes of the rule file at ``path``; None if there is none there (absent, or not a
    regular file: a symlink is not followed, a FIFO is not waited on). RuleError if it cannot
    be read or is over the size limit."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None  # a symlink: never followed
        raise RuleError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > MAX_FILE_BYTES:
            raise RuleError(_too_big(path, st.st_size))
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_BYTES:  # it may grow while we read
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise RuleError(_too_big(path, size))
        return b"".join(chunks)
    except OSError as e:
        raise RuleError(f"{path}: cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)


def _too_big(path: str, size: int) -> str:
    return f"{path}: too big: {size:,} bytes (limit {MAX_FILE_BYTES // 1024} KiB)"


def load_rule_file(path: str | Path, base: str, *, data: bytes | None = None) -> RuleFile:
    """Parse and check one rule file; raise RuleError naming file, line and key.

    Every failure is a RuleError: the daemon keeps its last good rules on one, and start-up
    reports it (exit 2)."""
    path = str(path)
    if data is None:
        data = read_rule_file(path)
        if data is None:
            raise RuleError(f"{path}: not a regular file")
    if len(data) > MAX_FILE_BYTES:
        raise RuleError(_too_big(path, len(data)))
    try:
        return _load(path, base, data)
    except RuleError:
        raise
    except RecursionError:  # _nesting() should have caught it first
        raise RuleError(f"{path}: nested too deeply (limit {MAX_NESTING} levels)") from None
    except Exception as e:  # a bug or an input we did not foresee: still one clear line
        raise RuleError(f"{path}: cannot load: {type(e).__name__}: {e}") from None


def _load(path: str, base: str, data: bytes) -> RuleFile:
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RuleError(f"{path}: not UTF-8 (byte {e.start})") from None
    line = _nesting(text)
    if line:
        raise RuleError(f"{path}:{line}: nested deeper than {MAX_NESTING} levels "
                        f"(limit {MAX_NESTING})")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RuleError(f"{path}:{_toml_line(str(e))}: {_strip_pos(str(e))}") from None
    locator = _Locator(path, text)
    rules: list[Rule] = []
    ignore: list[IgnoreGlob] = []
    for key in doc:
        if key not in TOP_KEYS:
            raise RuleError(locator.error(None, key, _unknown(key, [*TOP_KEYS, *RULE_KEYS])))
    _check_depth(locator, doc)
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
        ignore.extend(IgnoreGlob(_join(base, g.base), g.glob, g.origin) for g in preset.ignore)
    raw_ignore = doc.get("ignore", [])
    if not isinstance(raw_ignore, list) or not all(isinstance(g, str) for g in raw_ignore):
        raise RuleError(locator.error(None, "ignore", "expected a list of globs"))
    raw_rules = doc.get("rule", [])
    if not isinstance(raw_rules, list):
        raise RuleError(locator.error(None, "rule", "use [[rule]] tables"))
    if len(raw_rules) > MAX_RULES:
        raise RuleError(locator.error(MAX_RULES, "rule", f"more than {MAX_RULES:,} rules "
                                                         f"(limit {MAX_RULES:,})"))
    globs = len(raw_ignore)
    for table in raw_rules:
        paths = table.get("paths") if isinstance(table, dict) else None
        globs += len(paths) if isinstance(paths, list) else 1
    if globs > MAX_GLOBS:
        raise RuleError(f"{path}: {globs:,} globs in paths and ignore (limit {MAX_GLOBS:,})")
    if raw_ignore:
        origin = locator.origin(None, "ignore")
        for g in raw_ignore:
            ignore.append(IgnoreGlob(base, _check_glob(locator, None, "ignore", g), origin))
    for i, table in enumerate(raw_rules):
        rules.append(_parse_rule(locator, i, table, base, path, digest))
    return RuleFile(path, base, tuple(rules), tuple(ignore), digest)


def _nesting(text: str) -> int:
    """The line where arrays and inline tables nest deeper than MAX_NESTING, or 0.

    A scan without recursion, before tomllib (which recurses on nesting: RecursionError is
    not a TOMLDecodeError). Strings and comments are skipped; anything it misreads is a TOML
    error tomllib reports before reaching the part misread."""
    depth, line, i = 0, 1, 0
    special = _SPECIAL
    while True:
        m = special.search(text, i)
        if m is None:
            return 0
        j = m.start()
        c = text[j]
        if c == "\n":
            line += 1
            i = j + 1
        elif c == "#":
            i = text.find("\n", j)
            if i < 0:
                return 0
        elif c in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return line
            i = j + 1
        elif c in "]}":
            depth = max(0, depth - 1)
            i = j + 1
        else:  # a string: " ' """ or '''
            quote = c * 3 if text.startswith(c * 3, j) else c
            k = j + len(quote)
            while True:
                end = text.find(quote, k)
                if end < 0:
                    return 0  # unterminated: tomllib says where
                if c == '"':
                    back = end
                    while back > k and text[back - 1] == "\\":
                        back -= 1
                    if (end - back) % 2:  # an escaped quote
                        k = end + 1
                        continue
                break
            end += len(quote)
            if len(quote) == 3:  # up to two quotes of the content may touch the closing ones
                end += (text.startswith(c, end)) + (text.startswith(c * 2, end))
            line += text.count("\n", j, end)
            i = end


_SPECIAL = re.compile(r"[\n#\[\]{}\"']")


def _check_depth(loc: _Locator, doc: dict[str, Any]) -> None:
    """Dotted keys (``a.b.c = 1``) nest without brackets: bound the parsed document too
    (what reads it later - repr, json.dumps - recurses)."""
    for key, value in doc.items():
        if key == "rule" and isinstance(value, list):
            for i, table in enumerate(value):
                if isinstance(table, dict):
                    for k, v in table.items():
                        if _deeper_than(v, MAX_NESTING - 3):
                            raise RuleError(loc.error(i, k, f"nested deeper than {MAX_NESTING}"
                                                            f" levels (limit {MAX_NESTING})"))
        elif _deeper_than(value, MAX_NESTING - 1):
            raise RuleError(loc.error(None, key, f"nested deeper than {MAX_NESTING} levels "
                                                 f"(limit {MAX_NESTING})"))


def _deeper_than(value: Any, limit: int) -> bool:
    todo = [(value, 0)]
    while todo:
        v, d = todo.pop()
        if d > limit:
            return True
        if isinstance(v, dict):
            todo.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            todo.extend((x, d + 1) for x in v)
    return False
def _check_alerts(value: Any, path: str, text: str, base: str) -> None:
    """The ``[alerts]`` table is guardian.observe's: checked by it, reported like ours."""
    from guardian.rules.thresholds import check_table

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
    compiled = tuple(_check_glob(loc, i, "paths", g) for g in globs)
    settings: dict[str, tuple[Any, Origin]] = {}
    for key, value in table.items():
        if key == "paths":
            continue
        origin = loc.origin(i, key)
        settings[key] = (_check_value(loc, i, key, value, path, digest), origin)
    return Rule(base, compiled, settings)


def _check_value(loc: _Locator, i: int, key: str, value: Any, path: str, digest: str) -> Any:
    def bad(expected: str) -> RuleError:
        return RuleError(loc.error(i, key, f"expected {expected}, got {value!r}"))

    if key == "on_invalid":
        if value not in ON_INVALID:
            raise RuleError(loc.error(i, key, f"expected one of {', '.join(ON_INVALID)}, got "
                                              f"{value!r}{_closest(str(value), ON_INVALID)}"))
        return value
    if key == "fail":
        if value not in ("open", "closed"):
            raise bad('one of "open", "closed"')
        return value
    if key == "broken_imports":
        if value not in BROKEN_IMPORTS:
            raise RuleError(loc.error(i, key, f"expected one of {', '.join(BROKEN_IMPORTS)}, "
                                              f"got {value!r}"
                                              f"{_closest(str(value), BROKEN_IMPORTS)}"))
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
        if not isinstance(v.get("stdin", False), bool):
            raise RuleError(loc.error(i, "validators", "stdin must be true or false"))
        return ValidatorSpec("command", {"command": cmd, "timeout": float(timeout),
                                         "stdin": v.get("stdin", False)},
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


def _check_glob(loc: _Locator, i: int | None, key: str, g: str) -> Glob:
    try:
        return compile_glob(g)
    except GlobError as e:
        shown = g if len(g) <= 60 else g[:57] + "..."
        raise RuleError(loc.error(i, key, f"bad glob {shown!r}: {e}")) from None


def _join(base: str, rel: str) -> str:
    return f"{base}/{rel}" if base and rel else (base or rel)


def _unknown(key: str, valid: list[str]) -> str:
    return f"unknown key {key!r}{_closest(key, valid)}"


def _closest(word: str, valid: Any) -> str:
    import difflib  # only for an error message

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
        pat = re.compile(r"^\s*(?:" + re.escape(key) + r'|"' + re.escape(key) + r'")\s*[=.]')
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
        path = presets_dir() / f"{name}.toml"
        try:
            data = path.read_bytes()  # shipped with Guardian: a packager may symlink it
        except OSError as e:
            raise RuleError(f"{path}: cannot read: {e.strerror or e}") from None
        _presets[name] = load_rule_file(path, "", data=data)
    return _presets[name]


# ----------------------------------------------------------------------------- resolution
@dataclass(frozen=True)
class _Scope:
    """What is in force in one directory: the rule files from the presets down to it, and
    their rules grouped by base directory, in order.

    Directories without a rule file share their parent's scope object."""

    chain: tuple[RuleFile, ...]
    groups: tuple[tuple[str, tuple[Rule, ...]], ...]
    files: tuple[str, ...]
    globs: int  # in force here, for MAX_GLOBS_IN_FORCE

    @classmethod
    def of(cls, rf: RuleFile) -> _Scope:
        return cls((rf,), rf.groups, (rf.path,), rf.glob_count)

    def extended(self, rf: RuleFile) -> _Scope:
        return _Scope((*self.chain, rf), self.groups + rf.groups, (*self.files, rf.path),
                      self.globs + rf.glob_count)


class RuleSet:
    """All rule files of one root, loaded on demand and cached per directory.

    A rule file that fails to load keeps the last good version in force; ``errors`` holds
    the message until the file is fixed (the daemon raises an alert from it).
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self._files: dict[str, RuleFile | None] = {}
        self.errors: dict[str, str] = {}
        # Per directory: the rule files in force there (every lookup on the hot path of a
        # scan would otherwise walk the chain of rule files again).
        self._scopes: dict[str, _Scope] = {}
        self._top = _Scope.of(load_preset("default"))

    def _path(self, d: str) -> str:
        return os.path.join(self.root, d, RULE_FILE) if d else os.path.join(self.root, RULE_FILE)

    def _load_dir(self, d: str) -> RuleFile | None:
        if d in self._files:
            return self._files[d]
        path = self._path(d)
        rf: RuleFile | None = None
        try:
            data = read_rule_file(path)
            if data is not None:
                rf = load_rule_file(path, d, data=data)
            self.errors.pop(path, None)
        except RuleError as e:
            self.errors[path] = str(e)
        self._files[d] = rf
        return rf

    def loaded(self) -> list[RuleFile]:
        """The rule files loaded so far (those that failed to load are not)."""
        return [rf for rf in self._files.values() if rf is not None]

    def reload(self, d: str) -> str | None:
        """Re-read the rule file of directory ``d``; return its error, if any (the last good
        version of the file then stays in force)."""
        self._scopes.clear()
        path = self._path(d)
        try:
            data = read_rule_file(path)
            rf = load_rule_file(path, d, data=data) if data is not None else None
            if rf is not None:
                above = self._scope(d.rpartition("/")[0]) if d else self._top
                if above.globs + rf.glob_count > MAX_GLOBS_IN_FORCE:
                    raise RuleError(_too_many_in_force(path, rf, above))
        except RuleError as e:
            self.errors[path] = str(e)
            return str(e)
        finally:
            self._scopes.clear()
        self.errors.pop(path, None)
        self._files[d] = rf
        return None

    def _scope(self, d: str) -> _Scope:
        """The rule files in force in directory ``d`` (cached; no recursion on depth)."""
        scope = self._scopes.get(d)
        if scope is not None:
            return scope
        pending: list[str] = []  # d and its ancestors without a cached scope, deepest first
        cur: str | None = d
        while cur is not None and cur not in self._scopes:
            pending.append(cur)
            cur = cur.rpartition("/")[0] if cur else None
        scope = self._scopes[cur] if cur is not None else self._top
        for dd in reversed(pending):
            rf = self._load_dir(dd)
            if rf is not None:
                if scope.globs + rf.glob_count > MAX_GLOBS_IN_FORCE:
                    self.errors.setdefault(rf.path, _too_many_in_force(rf.path, rf, scope))
                else:
                    scope = scope.extended(rf)
            self._scopes[dd] = scope
        return scope

    def chain(self, relpath: str) -> Iterator[RuleFile]:
        """The rule files that apply to ``relpath``, the shipped default first."""
        yield from self._scope(relpath.rpartition("/")[0]).chain

    def effective(self, relpath: str) -> Effective:
        d = relpath.rpartition("/")[0]
        scope = self._scopes.get(d) or self._scope(d)
        settings: dict[str, tuple[Any, Origin]] = {}
        for base, rules in scope.groups:
            rel = _under(base, relpath) if base else relpath
            if rel is None:
                continue
            for rule in rules:
                if rule.always:
                    settings.update(rule.settings)
                    continue
                for g in rule.globs:
                    if g.match(rel):
                        settings.update(rule.settings)
                        break
        return Effective(relpath, settings, scope.files)

    def ignored(self, relpath: str) -> bool:
        return self.ignored_by(relpath) is not None

    def ignores_in(self, d: str) -> bool:
        """Whether any ``ignore`` glob is in force in directory ``d`` (a walk's fast path)."""
        return any(rf.ignore for rf in self._scope(d).chain)

    def ignored_by(self, relpath: str) -> IgnoreGlob | None:
        """The ``ignore`` glob of a rule file that matches ``relpath``, if any."""
        for rf in self._scope(relpath.rpartition("/")[0]).chain:
            for g in rf.ignore:
                if g.matches(relpath):
                    return g
        return None

    def discover(self, skip_dir: Any = None) -> list[str]:
        """Load every rule file under the root now; return their errors (for start-up).

        An explicit stack, not os.walk (which recurses: a tree ~1,000 levels deep raised
        RecursionError); symlinks are not followed; ``.git`` and ``skip_dir`` are pruned."""
        found: list[str] = []
        stack = [""]
        while stack:
            rel = stack.pop()
            try:
                with os.scandir(os.path.join(self.root, rel) if rel else self.root) as it:
                    entries = sorted(it, key=lambda e: e.name, reverse=True)
            except OSError:
                continue  # unreadable or vanished: as os.walk, skip it
            for entry in entries:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                child = f"{rel}/{entry.name}" if rel else entry.name
                if is_dir:
                    if entry.name != ".git" and not (skip_dir and skip_dir(child)):
                        stack.append(child)
                elif entry.name == RULE_FILE:
                    found.append(rel)
        for rel in found:
            self._load_dir(rel)
        for rel in found:
            self._scope(rel)  # the limit on globs in force, per directory
        return list(self.errors.values())


def _too_many_in_force(path: str, rf: RuleFile, above: _Scope) -> str:
    return (f"{path}: {rf.glob_count:,} globs here and {above.globs:,} in the rule files above "
            f"would be in force (limit {MAX_GLOBS_IN_FORCE:,}); this file is not applied")
