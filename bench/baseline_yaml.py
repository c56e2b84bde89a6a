"""The YAML validator as it was before yaml-rs (guardian/validators/yaml_.py at commit
733611d, its docstring aside), kept as the benchmarks' baseline: PyYAML's events composed by
Guardian, duplicate keys an error, a redefined anchor an error. Not used by Guardian itself.
"""

# ruff: noqa
# mypy: ignore-errors
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from guardian.validation.validators.base import (
    ERROR,
    WARNING,
    BaseValidator,
    Problem,
    decode_utf8,
    max_depth,
    one_line,
    opt_choice,
    text_position,
)

Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE = "tag:yaml.org,2002:merge"


class YamlValidator(BaseValidator):
    """Options: ``duplicate_keys`` = "error" (default) | "warning" | "allow";
    ``max_depth`` (default 1000)."""

    name = "yaml"

    def check(self, data: bytes, path: str, options: Mapping[str, Any]) -> Iterable[Problem]:
        return compose(data, options).problems


@dataclass
class Composed:
    """The documents' root nodes (an empty document is a null scalar) and what was wrong."""

    documents: list[yaml.Node] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == ERROR for p in self.problems)


def decode(data: bytes) -> tuple[str | None, Problem | None]:
    """YAML streams are UTF-8, or UTF-16/32 with a byte order mark (YAML 1.1 §5.2)."""
    for bom, encoding in ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
                          (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(encoding), None
            except UnicodeDecodeError as e:
                return None, Problem(f"invalid {encoding.upper()}: {e.reason}")
    text, problem = decode_utf8(data)
    return (None, problem) if text is None else (text.removeprefix("\ufeff"), None)


def compose(data: bytes, options: Mapping[str, Any], *, build: bool = False) -> Composed:
    """Compose every document of ``data``; stop at the first syntax error.

    Without ``build`` the node tree is checked, not kept (a collection's ``value`` stays
    empty): a big tree of live objects makes the garbage collector cost more than parsing.
    """
    duplicates = opt_choice(options, "duplicate_keys", ("error", "warning", "allow"), "error")
    limit = max_depth(options)
    result = Composed()
    text, problem = decode(data)
    if text is None:
        if problem is not None:
            result.problems.append(problem)
        return result
    try:
        _compose(text, duplicates, limit, build, result)
    except yaml.MarkedYAMLError as e:
        result.problems.append(_marked_problem(e))
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (control codes)
        line, column = text_position(text, e.position)
        code = e.character if isinstance(e.character, int) else ord(str(e.character)[:1] or "?")
        result.problems.append(Problem(f"character U+{code:04X} is not allowed in YAML",
                                       line, column))
    except yaml.YAMLError as e:
        result.problems.append(Problem(one_line(str(e))))
    return result


class _Scalar(yaml.ScalarNode):
    """A scalar whose implicit tag is resolved only when needed (most never are); until
    then its tag is ""."""

    implicit: tuple[bool, bool] = (True, False)


def compose_resolved(data: bytes, options: Mapping[str, Any]) -> Composed:
    """Like :func:`compose`, with every scalar's tag resolved (for constructing objects)."""
    result = compose(data, options, build=True)
    if result.ok:
        resolver = Loader("")
        seen: set[int] = set()
        todo: list[yaml.Node] = list(result.documents)
        while todo:
            node = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, yaml.ScalarNode):
                _resolve(resolver, node)
            elif isinstance(node, yaml.SequenceNode):
                todo.extend(node.value)
            else:
                for key, value in node.value:
                    todo.extend((key, value))
    return result


def _resolve(resolver: Any, node: yaml.ScalarNode) -> str:
    tag: str = node.tag
    if not tag:  # "": not resolved yet
        tag = node.tag = resolver.resolve(yaml.ScalarNode, node.value,
                                          getattr(node, "implicit", (True, False)))
    return str(tag)


def _compose(text: str, duplicates: str, limit: int, build: bool, result: Composed) -> None:
    """Build the nodes from parser events, with an explicit stack (any depth is safe)."""
    severity = ERROR if duplicates == "error" else WARNING
    check_keys = duplicates != "allow"
    resolver = Loader("")  # its resolve() gives implicit tags exactly as PyYAML's composer
    anchors: dict[str, yaml.Node] = {}
    stack: list[_Frame] = []
    documents = result.documents
    problems = result.problems
    # Events are matched by exact class (what both parsers emit), typed loosely: libyaml's
    # marks are not the Python parser's Mark class.
    scalar_event: Any = yaml.ScalarEvent
    alias_event: Any = yaml.AliasEvent
    sequence_start: Any = yaml.SequenceStartEvent
    mapping_start: Any = yaml.MappingStartEvent
    sequence_end: Any = yaml.SequenceEndEvent
    mapping_end: Any = yaml.MappingEndEvent
    sequence_node: Any = yaml.SequenceNode
    events: Any = yaml.parse(text, Loader=Loader)
    event: Any
    node: Any
    try:
        for event in events:
            kind = type(event)
            if kind is scalar_event:
                tag = event.tag
                node = _Scalar("" if tag is None or tag == "!" else tag, event.value,
                               event.start_mark, event.end_mark, event.style)
                if tag is None or tag == "!":
                    node.implicit = event.implicit
            elif kind is sequence_start or kind is mapping_start:
                if len(stack) >= limit:
                    problems.append(Problem(f"nesting too deep (over {limit} levels)",
                                            event.start_mark.line + 1,
                                            event.start_mark.column + 1))
                    return
                sequence = kind is sequence_start
                tag = event.tag
                if tag is None or tag == "!":  # no path resolvers in the safe loaders
                    tag = resolver.DEFAULT_SEQUENCE_TAG if sequence else \
                        resolver.DEFAULT_MAPPING_TAG
                node = (yaml.SequenceNode if sequence else yaml.MappingNode)(
                    tag, [], event.start_mark, None, flow_style=event.flow_style)
            elif kind is sequence_end or kind is mapping_end:
                stack.pop().node.end_mark = event.end_mark
                continue
            elif kind is alias_event:
                found = anchors.get(event.anchor)
                if found is None:
                    problems.append(Problem(f"found undefined alias {event.anchor!r}",
                                            event.start_mark.line + 1,
                                            event.start_mark.column + 1))
                    return
                node = found
            else:
                if isinstance(event, yaml.DocumentStartEvent):
                    anchors = {}
                continue
            if event.anchor is not None and kind is not alias_event:
                if event.anchor in anchors:  # PyYAML refuses to load such a document
                    first = anchors[event.anchor].start_mark.line + 1
                    problems.append(Problem(
                        f"duplicate anchor {event.anchor!r} (first at line {first})",
                        event.start_mark.line + 1, event.start_mark.column + 1))
                anchors[event.anchor] = node
            if not stack:
                documents.append(node)
            else:
                frame = stack[-1]
                if isinstance(frame.node, sequence_node):
                    if build:
                        frame.node.value.append(node)
                elif frame.key is None:
                    frame.key = node
                    frame.key_mark = event.start_mark  # an alias key: where the alias is
                else:
                    key = frame.key
                    frame.key = None
                    if build:
                        frame.node.value.append((key, node))
                    if check_keys and isinstance(key, yaml.ScalarNode):
                        _check_key(frame, key, resolver, severity, problems)
            if kind is sequence_start or kind is mapping_start:
                stack.append(_Frame(node))
    finally:
        events.close()


def _check_key(frame: _Frame, key: yaml.ScalarNode, resolver: Any, severity: str,
               problems: list[Problem]) -> None:
    """Keys are bucketed by value; tags are resolved only when two values are equal."""
    mark = frame.key_mark
    same = frame.keys.setdefault(key.value, [])
    if same:
        tag = _resolve(resolver, key)
        if tag != _MERGE:
            for first, first_mark in same:
                if _resolve(resolver, first) == tag:
                    problems.append(Problem(
                        f"duplicate key {key.value!r} (first at line {first_mark.line + 1})",
                        mark.line + 1, mark.column + 1, severity))
                    break
    same.append((key, mark))


@dataclass
class _Frame:
    node: yaml.SequenceNode | yaml.MappingNode
    key: yaml.Node | None = None
    key_mark: Any = None
    keys: dict[Any, list[tuple[yaml.ScalarNode, Any]]] = field(default_factory=dict)


#: The nesting limit of PyYAML's own scanners from 6.0.4 on.
PARSER_MAX_DEPTH = 1000


def _marked_problem(e: yaml.MarkedYAMLError) -> Problem:
    """PyYAML's "problem" at "problem_mark", with its context ("while scanning a simple key
    at line 2") when there is one; marks are 0-based."""
    message = e.problem or e.context or "invalid YAML"
    mark = e.problem_mark or e.context_mark
    if "maximum nesting depth" in message and mark is not None:
        # PyYAML 6.0.4+ stops at 1,000 levels itself, before our own count: say it alike.
        return Problem(f"nesting too deep (over {PARSER_MAX_DEPTH} levels)", mark.line + 1,
                       mark.column + 1)
    if e.context and e.problem and e.context_mark is not None:
        message += (f" ({e.context} at line {e.context_mark.line + 1}, "
                    f"column {e.context_mark.column + 1})")
    if mark is None:
        return Problem(one_line(message))
    return Problem(one_line(message), mark.line + 1, mark.column + 1)


VALIDATOR = YamlValidator()
