"""JSON Schema: a JSON, YAML or TOML document must match the schema a rule names.

The document is first checked by its format's validator; if it does not parse, those are
the problems reported (a schema says nothing about a file that does not load). Each schema
error is reported with the JSON pointer of the offending value ("/servers/0/port: 'x' is not
of type 'integer'"), sorted by position in the document, at most :data:`MAX_ERRORS`; JSON
and YAML errors also carry the value's line and column.

Options: ``schema`` (path of the schema file, JSON or YAML) or ``schema_data`` (the schema
itself); ``format`` ("json", "yaml", "toml"; default: from the file's extension). Relative
``$ref``s are read from files beside the schema; nothing is fetched from the network.
Schemas are cached per file (path, size, mtime), so a rule applied to many files costs one
load. Values are compared as JSON sees them: YAML timestamps and TOML dates are strings.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema
import yaml

from guardian.validation.validators import json_, toml_, yaml_
from guardian.validation.validators.base import (
    BaseValidator,
    OptionError,
    Problem,
    lower_first,
    one_line,
    opt_choice,
)

MAX_ERRORS = 50
#: A YAML document whose aliases expand to more nodes than this is not validated: checking
#: it would take exponential time ("billion laughs").
MAX_EXPANDED_NODES = 1_000_000
_FORMATS = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}

Path = tuple[str | int, ...]


class SchemaValidator(BaseValidator):
    name = "schema"

    def check(self, data: bytes, path: str, options: Mapping[str, Any]) -> Iterable[Problem]:
        fmt = _format(path, options)
        validator, problem = _schema_validator(options)
        if validator is None:
            return [problem] if problem else []
        problems, documents, locate = _load(fmt, data, path, options)
        if any(p.severity == "error" for p in problems):
            return problems
        found: list[tuple[Any, ...]] = []
        try:
            for n, document in enumerate(documents):
                for error in validator.iter_errors(document):
                    where: Path = tuple(error.absolute_path)
                    found.append((n, _sort_key(where), where, error.message))
        except _RefError as e:
            return [*problems, Problem(one_line(str(e)))]
        found.sort(key=lambda f: (f[0], f[1], f[3]))
        shown = found[:MAX_ERRORS]
        positions = locate([(f[0], f[2]) for f in shown])
        for n, _, where, message in shown:
            prefix = f"document {n + 1}: " if len(documents) > 1 else ""
            line, column = positions.get((n, where), (None, None))
            problems.append(Problem(one_line(f"{prefix}{pointer(where)}: {lower_first(message)}"),
                                    line, column))
        if len(found) > MAX_ERRORS:
            problems[-1] = Problem(f"{len(found) - MAX_ERRORS + 1} more schema errors not shown")
        return problems


def pointer(path: Path) -> str:
    """RFC 6901 JSON pointer of a path; the whole document is "(root)"."""
    if not path:
        return "(root)"
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _sort_key(path: Path) -> tuple[tuple[int, Any], ...]:
    return tuple((0, p) if isinstance(p, int) else (1, str(p)) for p in path)


def _format(path: str, options: Mapping[str, Any]) -> str:
    if "format" in options:
        return opt_choice(options, "format", ("json", "yaml", "toml"), "json")
    fmt = _FORMATS.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise OptionError(f"cannot tell the format of {os.path.basename(path)!r} from its "
                          "extension: set format to json, yaml or toml")
    return fmt


# ----------------------------------------------------------------------------- the schema
_cache: dict[tuple[str, int, int, int], Any] = {}
_cache_lock = threading.Lock()


def _schema_validator(options: Mapping[str, Any]) -> tuple[Any, Problem | None]:
    """A jsonschema validator for the schema of ``options``, or a problem naming it."""
    if "schema_data" in options:
        schema = options["schema_data"]
        return _compile(schema, "given in options", os.getcwd())
    schema_path = options.get("schema")
    if not isinstance(schema_path, str) or not schema_path:
        raise OptionError("schema (a schema file path) or schema_data is required")
    schema_path = os.path.abspath(schema_path)
    try:
        st = os.stat(schema_path)
    except OSError as e:
        return None, Problem(f"cannot read schema {schema_path}: {e.strerror or e}")
    key = (schema_path, st.st_ino, st.st_size, st.st_mtime_ns)
    cached = _cache.get(key)
    if cached is None:
        cached = _load_schema(schema_path)
        with _cache_lock:
            if len(_cache) >= 32:
                _cache.clear()
            _cache[key] = cached
    return cached


def _load_schema(schema_path: str) -> tuple[Any, Problem | None]:
    try:
        with open(schema_path, "rb") as f:
            raw = f.read()
    except OSError as e:
        return None, Problem(f"cannot read schema {schema_path}: {e.strerror or e}")
    try:
        text = raw.decode("utf-8-sig")
        if schema_path.endswith((".yaml", ".yml")):
            schema = yaml.safe_load(text)
        else:
            schema = json.loads(text)
    except (ValueError, yaml.YAMLError) as e:
        detail = one_line(lower_first(str(e)), 200)
        return None, Problem(f"schema {schema_path} does not parse: {detail}")
    return _compile(schema, schema_path, os.path.dirname(schema_path))


def _compile(schema: Any, name: str, base_dir: str) -> tuple[Any, Problem | None]:
    if not isinstance(schema, dict | bool):
        return None, Problem(f"schema {name} is not a JSON Schema (an object or a boolean)")
    cls: Any = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as e:
        return None, Problem(one_line(f"schema {name} is not a valid JSON Schema: "
                                      f"{pointer(tuple(e.absolute_path))}: {e.message}"))
    registry: referencing.Registry[Any] = referencing.Registry(
        retrieve=_local_retriever(base_dir))  # type: ignore[call-arg]
    return _Guarded(cls(schema, registry=registry), name), None


class _Guarded:
    """A validator whose unresolvable ``$ref`` becomes a problem, not an exception."""

    def __init__(self, validator: Any, name: str) -> None:
        self.validator = validator
        self.name = name

    def iter_errors(self, instance: Any) -> list[Any]:
        try:
            return list(self.validator.iter_errors(instance))
        except referencing.exceptions.Unresolvable as e:
            raise _RefError(f"schema {self.name}: cannot resolve a $ref: {e}") from None


class _RefError(Exception):
    pass


def _local_retriever(base_dir: str) -> Any:
    def retrieve(uri: str) -> referencing.Resource[Any]:
        if "://" in uri and not uri.startswith("file://"):
            raise ValueError(f"not fetching {uri}: only files beside the schema are read")
        target = os.path.join(base_dir, uri.removeprefix("file://"))
        with open(target, "rb") as f:
            contents = json.loads(f.read().decode("utf-8-sig"))
        return referencing.Resource.from_contents(
            contents, default_specification=referencing.jsonschema.DRAFT202012)
    return retrieve


# ----------------------------------------------------------------------------- the document
Locator = Any  # Callable[[list[tuple[int, Path]]], dict[tuple[int, Path], tuple[int, int]]]


def _load(fmt: str, data: bytes, path: str,
          options: Mapping[str, Any]) -> tuple[list[Problem], list[Any], Locator]:
    """Problems of the document itself, its documents as JSON-like values, and a locator."""
    nowhere: Locator = lambda wanted: {}  # noqa: E731
    if fmt == "json":
        result = json_.VALIDATOR.validate(data, path, options)
        if not result.ok:
            return list(result.problems), [], nowhere
        text = data.decode("utf-8").removeprefix("\ufeff")
        try:
            document = json.loads(text)
        except ValueError:  # an integer past Python's digit limit
            document = json.loads(text, parse_int=float)
        return list(result.problems), [document], lambda wanted: {
            (0, p): pos for p, pos in json_.locate(text, [p for _, p in wanted]).items()}
    if fmt == "toml":
        problem, table = toml_.load(data)
        if problem is not None or table is None:
            return [problem] if problem else [], [], nowhere
        return [], [_jsonable(table)], nowhere
    composed = yaml_.compose_resolved(data, options)
    if not composed.ok:
        return composed.problems, [], nowhere
    documents = []
    for node in composed.documents:
        trouble = _expansion_problem(node)
        if trouble is not None:
            return [*composed.problems, trouble], [], nowhere
        documents.append(_Constructor("").construct_document(node))
    return composed.problems, documents, lambda wanted: _yaml_positions(composed.documents,
                                                                         wanted)


def _jsonable(value: Any) -> Any:
    """TOML dates and times as the strings JSON would carry."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return value


class _Constructor(yaml.SafeLoader):
    """Safe construction, JSON-flavoured: unknown tags (``!Ref``) build plain values, and
    timestamps stay strings."""


def _as_text(loader: _Constructor, node: yaml.Node) -> Any:
    return loader.construct_scalar(node)  # type: ignore[arg-type]


def _untagged(loader: _Constructor, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


_Constructor.add_constructor(None, _untagged)
_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _as_text)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _expansion_problem(root: yaml.Node) -> Problem | None:
    """A cycle of aliases, or aliases expanding past :data:`MAX_EXPANDED_NODES` nodes."""
    size: dict[int, int] = {}
    active: set[int] = set()  # the nodes on the current path
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        if finished:
            active.discard(id(node))
            total = 1 + sum(size[id(c)] for c in _children(node))
            if total > MAX_EXPANDED_NODES:
                return Problem(f"aliases expand to over {MAX_EXPANDED_NODES} values; not "
                               "checked against the schema",
                               node.start_mark.line + 1, node.start_mark.column + 1)
            size[id(node)] = total
            continue
        if id(node) in size:
            continue
        active.add(id(node))
        stack.append((node, True))
        for child in _children(node):
            if id(child) in active:
                return Problem("recursive alias (a collection contains itself); not checked "
                               "against the schema",
                               child.start_mark.line + 1, child.start_mark.column + 1)
            if id(child) not in size:
                stack.append((child, False))
    return None


def _yaml_positions(documents: list[yaml.Node],
                    wanted: list[tuple[int, Path]]) -> dict[tuple[int, Path], tuple[int, int]]:
    found = {}
    for n, path in wanted:
        node: yaml.Node | None = documents[n]
        for step in path:
            node = _child(node, step) if node is not None else None
        if node is not None:
            found[(n, path)] = (node.start_mark.line + 1, node.start_mark.column + 1)
    return found


def _child(node: yaml.Node, step: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int):
        return node.value[step] if 0 <= step < len(node.value) else None
    if isinstance(node, yaml.MappingNode):
        for key, value in reversed(node.value):  # the last of duplicate keys wins
            if isinstance(key, yaml.ScalarNode) and key.value == str(step):
                return value  # type: ignore[no-any-return]
    return None


VALIDATOR = SchemaValidator()
