"""YAML: every document of the file must be valid YAML 1.2; a repeated key is reported.

The verdict is a YAML 1.2 parser's: yaml-rs (saphyr's parser, in Rust), which accepts and
rejects exactly what yaml-test-suite says (308/308 valid, 94/94 invalid). PyYAML, which
Python's tools use, reads YAML 1.1: it refuses 53 of those valid documents (``? complex``
keys, ``: value`` with an empty key, anchors on their own line, …) and accepts 16 invalid
ones (``[-]``, comments glued to a scalar, directives without ``...``); on its own it made
``on_invalid = "revert"`` undo good writes.

PyYAML's C parser still does what yaml-rs cannot: its events are composed into nodes, never
constructed into objects, by our own loop with an explicit stack (PyYAML's composers recurse,
and libyaml's overflows the C stack on deeply nested input), which

- locates duplicate keys (yaml-rs only says one exists) and knows merge keys (``<<``) may
  repeat;
- gives its familiar message ("did not find expected ',' or ']' (while parsing a flow
  sequence at line 2, column 4)") when both parsers reject a document at the same line;
- decides where yaml-rs cannot judge: nesting deeper than its stack can take (the input is
  bounded first: a line whose indentation and block indicators are wider than
  :data:`SAFE_PREFIX` is not given to it), flow nesting past its 255 levels, aliases that
  would expand past its limits (it expands them; we keep them shared nodes: no "billion
  laughs"), and tags it cannot construct (``!!timestamp``, ``!!int abc``).

Documents yaml-rs accepts cost one pass of it (a few times faster than composing with
PyYAML); the composition runs only on the rest. Any tag is syntax here (CloudFormation's
``!Ref``, Ansible's ``!vault``); nothing in the file can run code.

Duplicate keys (option ``duplicate_keys``) are a warning by default: the YAML spec wants
unique keys, yaml-test-suite's 2JQS (``: a`` twice) is valid all the same, and PyYAML keeps
the last value; the strict preset makes them an error. Scalar keys are compared by (tag,
text) with the YAML 1.2 core schema (``a`` and ``"a"`` are the same key; ``1`` and ``"1"``
are not); complex (collection) keys are not compared. An anchor may be redefined (YAML 1.2:
an alias refers to the latest).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
import yaml_rs

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

#: Widest run of indentation and block indicators ("- ", "? ", ": ") at the start of a line
#: that yaml-rs is given. Block nesting needs a column (two at most, for a sequence written at
#: its mapping's indentation) per level, so this bounds block depth at 2 * (201 + 1); flow
#: nesting stops at 255 in its parser. yaml-rs builds Python objects recursively, replaying
#: each alias in place, at most ALIAS_DEPTH aliases deep: (4 + 1) * (404 + 255) levels at
#: most, a third of what overflows an 8 MiB thread stack (a segmentation fault past ~10,000).
SAFE_PREFIX = 201
_ALIAS_DEPTH = 4
#: The deepest a document yaml-rs accepted can be (block, then flow, levels).
_MAX_DEPTH_CHECKED = 2 * (SAFE_PREFIX + 1) + 255
#: A line starting with a wider prefix (an indicator counts when a space or tab follows it);
#: lines that might are found first with a plain character class, which is much faster.
_WIDE_PREFIX = re.compile(rf"(?:[ \t]|[-?:](?=[ \t])){{{SAFE_PREFIX + 1}}}")
_MAYBE_WIDE = re.compile(rf"\n[ \t?:-]{{{SAFE_PREFIX + 1}}}")
#: Characters YAML does not allow in a stream (YAML 1.2 §5.1, c-printable): checked here, since
#: yaml-rs takes some (and reads a NUL as the end of the text). In UTF-8 input, bytes find them
#: first: C0 controls and DEL by deletion, C1 controls and U+FFFE/U+FFFF by their encodings.
_FORBIDDEN = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_C0 = bytes([*(c for c in range(32) if c not in (9, 10, 13)), 127])
_C1 = re.compile(rb"\xc2[\x80-\x84\x86-\x9f]")
_NONCHARACTER = re.compile(rb"\xef\xbf[\xbe\xbf]")
_PARSE_ERROR = re.compile(r"YAML parse error at line (\d+), column (\d+)\n")
#: yaml-rs errors that are its own limits, not the document's: the composition decides.
_LIMITS = ("recursion limit exceeded", "anchor count exceeded supported limit")


class YamlValidator(BaseValidator):
    """Options: ``duplicate_keys`` = "warning" (default) | "error" | "allow";
    ``max_depth`` (default 1000)."""

    name = "yaml"

    def check(self, data: bytes, path: str, options: Mapping[str, Any]) -> Iterable[Problem]:
        return check(data, options)


@dataclass
class Composed:
    """The documents' root nodes (an empty document is a null scalar) and what was wrong;
    ``stopped`` is the error that ended the composition (also in ``problems``), if any, and
    ``stopped_at`` the lines it names (where it was found, and its context)."""

    documents: list[yaml.Node] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    stopped: Problem | None = None
    stopped_at: tuple[int | None, ...] = ()

    @property
    def ok(self) -> bool:
        return not any(p.severity == ERROR for p in self.problems)


def decode(data: bytes) -> tuple[str | None, Problem | None]:
    """YAML streams are UTF-8, or UTF-16/32 with a byte order mark (YAML 1.2 §5.2)."""
    for bom, encoding in ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
                          (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(encoding), None
            except UnicodeDecodeError as e:
                return None, Problem(f"invalid {encoding.upper()}: {e.reason}")
    text, problem = decode_utf8(data)
    return (None, problem) if text is None else (text.removeprefix("\ufeff"), None)


# ----------------------------------------------------------------------------- the verdict
def check(data: bytes, options: Mapping[str, Any]) -> list[Problem]:
    """What is wrong with ``data`` as YAML 1.2 (the validator's answer; see the module)."""
    duplicates = _duplicates_option(options)
    limit = max_depth(options)
    text, problem = decode(data)
    if text is None:
        return [problem] if problem else []
    forbidden = _forbidden_character(data, text)
    if forbidden is not None:
        return [forbidden]
    spec = _Spec("unsure") if _wide(text) else _spec_verdict(text, duplicates != "allow")
    if spec.kind == "ok" and limit >= _MAX_DEPTH_CHECKED:
        return []  # the block and flow bounds above prove the depth is within the limit
    composed = Composed()
    _compose_text(text, duplicates, limit, False, composed)
    stopped = composed.stopped
    pyyaml_fails = stopped is not None and not stopped.message.startswith("nesting too deep")
    if spec.kind == "syntax":
        assert spec.problem is not None
        if pyyaml_fails and stopped is not None and spec.problem.line in composed.stopped_at:
            return [stopped]  # both refuse it here: PyYAML's message says more
        return [spec.problem]
    if not pyyaml_fails or spec.kind == "unsure":
        return composed.problems  # PyYAML's composition (with its error, if it stopped)
    # Valid YAML 1.2 that PyYAML cannot read: what yaml-rs saw is all there is to say.
    if spec.kind == "duplicate" and spec.problem is not None:
        return [Problem(spec.problem.message, None, None, _severity(duplicates))]
    depth = _depth(spec.value)
    if depth > limit:
        return [Problem(f"nesting too deep (over {limit} levels)")]
    return []


def _forbidden_character(data: bytes, text: str) -> Problem | None:
    utf8 = not data.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff"))
    if utf8 and len(data.translate(None, _C0)) == len(data) and _C1.search(data) is None \
            and _NONCHARACTER.search(data) is None:
        return None
    m = _FORBIDDEN.search(text)
    if m is None:
        return None
    return Problem(f"character U+{ord(m.group()):04X} is not allowed in YAML",
                   *text_position(text, m.start()))


def _wide(text: str) -> bool:
    """Whether a line starts with more than :data:`SAFE_PREFIX` columns of indentation and
    block indicators."""
    if _WIDE_PREFIX.match(text):
        return True
    return any(_WIDE_PREFIX.match(text, m.start() + 1) for m in _MAYBE_WIDE.finditer(text))


@dataclass
class _Spec:
    """yaml-rs's verdict: "ok" (with the value it built), "syntax" or "duplicate" (with the
    problem), or "unsure" (one of its limits, or a tag it cannot construct)."""

    kind: str
    problem: Problem | None = None
    value: Any = None


def _spec_verdict(text: str, check_keys: bool) -> _Spec:
    policy = yaml_rs.DuplicateKeyPolicy.Error if check_keys else \
        yaml_rs.DuplicateKeyPolicy.LastWins
    limits = yaml_rs.AliasLimits(max_replay_stack_depth=_ALIAS_DEPTH)
    try:
        value = yaml_rs.loads(text, parse_datetime=False, alias_limits=limits,
                              duplicate_key_policy=policy)
    except ValueError as e:  # YAMLDecodeError, or an integer past Python's digit limit
        message = str(e)
        m = _PARSE_ERROR.match(message)
        if m is not None:
            reason = message.rsplit("\n", 1)[-1]
            if any(limit in reason for limit in _LIMITS):
                return _Spec("unsure")
            return _Spec("syntax", Problem(one_line(reason), int(m.group(1)),
                                           int(m.group(2))))
        if message.startswith("duplicate mapping key: "):
            key = message.removeprefix("duplicate mapping key: ")
            key = {"None": "null", "True": "true", "False": "false"}.get(key, key)
            return _Spec("duplicate", Problem(one_line(f"duplicate key {key}")))
        return _Spec("unsure")  # alias limits, "!!int abc", "!!timestamp", big integers
    return _Spec("ok", value=value)


def _depth(value: Any) -> int:
    """Nesting depth of what yaml-rs built (lists, dicts, sets; tuples and frozensets for
    complex keys), without recursion."""
    deepest = 0
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, dict):
            children: Iterable[Any] = [*node.keys(), *node.values()]
        elif isinstance(node, list | tuple | set | frozenset):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        todo.extend((child, depth + 1) for child in children)
    return deepest


def _duplicates_option(options: Mapping[str, Any]) -> str:
    return opt_choice(options, "duplicate_keys", ("error", "warning", "allow"), "warning")


def _severity(duplicates: str) -> str:
    return ERROR if duplicates == "error" else WARNING


# ----------------------------------------------------------------------------- composition
def compose(data: bytes, options: Mapping[str, Any], *, build: bool = False) -> Composed:
    """Compose every document of ``data`` with PyYAML's parser; stop at its first error.

    Without ``build`` the node tree is checked, not kept (a collection's ``value`` stays
    empty): a big tree of live objects makes the garbage collector cost more than parsing.
    """
    duplicates = _duplicates_option(options)
    limit = max_depth(options)
    result = Composed()
    text, problem = decode(data)
    if text is None:
        if problem is not None:
            result.problems.append(problem)
            result.stopped = problem
        return result
    _compose_text(text, duplicates, limit, build, result)
    return result


def _compose_text(text: str, duplicates: str, limit: int, build: bool,
                  result: Composed) -> None:
    try:
        _compose(text, duplicates, limit, build, result)
    except yaml.MarkedYAMLError as e:
        result.stopped = _marked_problem(e)
        result.stopped_at = tuple(m.line + 1 for m in (e.problem_mark, e.context_mark) if m)
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (control codes)
        line, column = text_position(text, e.position)
        code = e.character if isinstance(e.character, int) else ord(str(e.character)[:1] or "?")
        result.stopped = Problem(f"character U+{code:04X} is not allowed in YAML", line, column)
    except yaml.YAMLError as e:
        result.stopped = Problem(one_line(str(e)))
    if result.stopped is not None and result.stopped not in result.problems:
        result.problems.append(result.stopped)
        result.stopped_at = result.stopped_at or (result.stopped.line,)


class _Scalar(yaml.ScalarNode):
    """A scalar whose implicit tag is resolved only when needed (most never are); until
    then its tag is ""."""

    implicit: tuple[bool, bool] = (True, False)


def compose_resolved(data: bytes, options: Mapping[str, Any]) -> Composed:
    """The problems :func:`check` finds and, when there is no error, the documents as PyYAML
    composes them, every scalar's tag resolved (for constructing objects, as PyYAML would).

    Valid YAML that PyYAML cannot read has no documents, and a warning saying so.
    """
    problems = check(data, options)
    if any(p.severity == ERROR for p in problems):
        return Composed(problems=problems)
    result = compose(data, {**options, "duplicate_keys": "allow"}, build=True)
    if result.stopped is not None:
        stopped = result.stopped
        return Composed(problems=[*problems, Problem(
            f"PyYAML (a YAML 1.1 parser) cannot read this valid YAML: {stopped.message}",
            stopped.line, stopped.column, WARNING)])
    result.problems = problems
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
    severity = _severity(duplicates)
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
                    result.stopped = Problem(f"nesting too deep (over {limit} levels)",
                                             event.start_mark.line + 1,
                                             event.start_mark.column + 1)
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
                    result.stopped = Problem(f"found undefined alias {event.anchor!r}",
                                             event.start_mark.line + 1,
                                             event.start_mark.column + 1)
                    return
                node = found
            else:
                if isinstance(event, yaml.DocumentStartEvent):
                    anchors = {}
                continue
            if event.anchor is not None and kind is not alias_event:
                anchors[event.anchor] = node  # a redefined anchor: aliases get the latest
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
    """Keys are bucketed by text; tags are resolved only when two texts are equal."""
    mark = frame.key_mark
    same = frame.keys.setdefault(key.value, [])
    if same:
        tag = _key_tag(key)
        if tag != _MERGE:
            for first, first_mark in same:
                if _key_tag(first) == tag:
                    problems.append(Problem(
                        f"duplicate key {key.value!r} (first at line {first_mark.line + 1})",
                        mark.line + 1, mark.column + 1, severity))
                    break
    same.append((key, mark))


#: The YAML 1.2 core schema's implicit types of plain scalars (§10.3.2); anything else is a
#: string. ``<<`` is PyYAML's (and most loaders') merge key.
_CORE_TAGS = [(re.compile(pattern), f"tag:yaml.org,2002:{name}") for pattern, name in (
    (r"(?:null|Null|NULL|~)?\Z", "null"),
    (r"(?:true|True|TRUE|false|False|FALSE)\Z", "bool"),
    (r"(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)\Z", "int"),
    (r"(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
     r"|\.(?:nan|NaN|NAN))\Z", "float"),
    (r"<<\Z", "merge"),
)]


def _key_tag(node: yaml.ScalarNode) -> str:
    """A scalar key's tag: its own, else the core schema's for a plain scalar, else str.

    Not stored on the node: :func:`compose_resolved` resolves tags as PyYAML would.
    """
    if node.tag:
        return str(node.tag)
    if getattr(node, "implicit", (True, False))[0]:
        for pattern, tag in _CORE_TAGS:
            if pattern.match(node.value):
                return tag
    return "tag:yaml.org,2002:str"


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
