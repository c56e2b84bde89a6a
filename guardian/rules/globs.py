"""Path globs of rule files, matched in time linear in the path's length.

Semantics (those of ``pathlib``/``glob`` with ``**``, plus editorconfig's braces):
``*`` matches within one path segment, ``?`` one character, ``[abc]``/``[!abc]`` a set
(``[a-z]`` a range; a negated set never matches ``/``), ``{a,b}`` alternatives (nested, and
they may hold ``/``), ``\\x`` the character ``x`` itself, ``**`` any number of whole segments
(``**/x`` matches ``x`` too, and a trailing ``/**`` matches everything below). Globs are
relative to the rule file's directory; a leading ``/`` is allowed and means the same thing.

Why not :mod:`re`: Python's regular expressions backtrack, and a glob such as
``**/**/*a*a*a*a*b`` against a long path took seconds per match, on the daemon's event loop.
A glob is compiled once (when its rule file is loaded) to an NFA, Thompson's construction;
matching runs a DFA built lazily from it over the glob's character classes. Each character
of a path costs one table step, plus, the first time a (state, class) pair is met, one subset
step bounded by the glob's size: no path can make it backtrack. Literal prefixes and suffixes
answer most non-matching paths before the DFA runs, and a ``**/name`` glob looks only at the
last segment. The limits below bound what one glob may cost.
"""

from __future__ import annotations

from _thread import allocate_lock  # threading costs ~1 ms to import: agent hooks match globs
from bisect import bisect_right

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~3 ms to import
    from typing import Any, NoReturn

#: Longest glob, in characters (a path is at most 4,096 bytes on Linux).
MAX_GLOB_LENGTH = 1024
#: Wildcards (``*``, ``**``, ``?``, ``[...]``) in one glob.
MAX_WILDCARDS = 64
#: Brace alternatives in one glob (``{a,b}`` counts 2), and how deep braces may nest.
MAX_ALTERNATIVES = 64
MAX_BRACE_DEPTH = 8
#: DFA states kept per glob before its cache starts afresh, and characters whose class is
#: remembered: memory stays bounded, and matching linear either way.
_MAX_DFA_STATES = 128
_MAX_CHAR_CACHE = 256

# NFA state kinds.
_MATCH, _CHAR, _NOSLASH, _ANY, _CLASS, _EPS = range(6)
_SLASH = ord("/")
# What a DFA state settles (checked after every character).
_OPEN, _ACCEPT_ALL, _DEAD = 0, 1, 2


def _fail(message: str) -> NoReturn:
    """Raise GlobError (imported here: guardian.errors loads enum, which an agent hook that
    only matches good globs does without)."""
    from guardian.errors import GlobError

    raise GlobError(message)


def compile_glob(glob: str) -> Glob:
    """The matcher of ``glob``; raise :class:`GlobError` if it is malformed or too costly.

    Compile once and keep the result (rules keep theirs): there is no global cache."""
    return Glob(glob)


def matches(glob: str, relpath: str) -> bool:
    """One-off match (compiles ``glob`` each time)."""
    return Glob(glob).match(relpath)


class Glob:
    """A compiled glob: ``match(relpath)`` says whether the whole path matches."""

    __slots__ = ("_bounds", "_chars", "_dfa", "_exact", "_lock", "_needle", "_nfa", "_prefix",
                 "_segments", "_suffix", "_tail_only", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        nfa, prefix, suffix, needle, literal = _parse(text)
        self._nfa = nfa
        self._exact = prefix if literal else None
        self._prefix = prefix
        self._suffix = suffix
        self._needle = needle
        body = text.lstrip("/")
        # "**/REST" where REST cannot match a "/": only the last segment can decide.
        self._tail_only = body.startswith("**/") and "/" not in body[3:]
        # Segments of literals and "*" only (the common "*.py", "src/*/x.md"): matched by
        # string searches, leftmost first, which is exact for them and needs no DFA.
        rest = body[3:] if self._tail_only else body
        self._segments = (None if any(c in rest for c in "?[]{}\\") or "**" in rest else
                          tuple(tuple(seg.split("*")) for seg in rest.split("/")))
        self._bounds: list[int] = []
        self._chars: dict[str, int] = {}
        self._lock = allocate_lock()
        self._dfa: _Dfa | None = None  # made on first use: most globs never need it

    def _first_dfa(self) -> _Dfa:
        with self._lock:
            if self._dfa is None:
                nfa = self._nfa
                nfa.finish()
                self._bounds = nfa.bounds
                # The DFA starts after the literal prefix, which match() checks first.
                for ch in self._prefix:
                    nfa.begin = nfa.step(nfa.begin, bisect_right(self._bounds, ord(ch)))
                self._dfa = _Dfa(nfa)
            return self._dfa

    def __repr__(self) -> str:
        return f"Glob({self.text!r})"

    def __str__(self) -> str:
        return self.text

    def match(self, path: str) -> bool:
        if self._exact is not None:
            return path == self._exact
        if not (path.startswith(self._prefix) and path.endswith(self._suffix)
                and self._needle in path):
            return False
        segments = self._segments
        if segments is not None:
            if self._tail_only:
                return _chunks_match(path[path.rfind("/") + 1:], segments[0])
            parts = path.split("/")
            return len(parts) == len(segments) and all(map(_chunks_match, parts, segments))
        if self._tail_only:
            path = path[path.rfind("/") + 1:]
        elif self._prefix:
            path = path[len(self._prefix):]
        dfa = self._dfa or self._first_dfa()
        fate, trans, chars = dfa.fate, dfa.trans, self._chars
        state = 0
        if fate[0]:
            return fate[0] == _ACCEPT_ALL
        for ch in path:
            c = chars.get(ch)
            if c is None:
                c = bisect_right(self._bounds, ord(ch))
                if len(chars) < _MAX_CHAR_CACHE:
                    chars[ch] = c
            nxt = trans[state].get(c)
            if nxt is None:
                dfa, nxt = self._step(dfa, state, c)
                fate, trans = dfa.fate, dfa.trans
            state = nxt
            if fate[state]:
                return fate[state] == _ACCEPT_ALL
        return dfa.accept[state]

    def _step(self, dfa: _Dfa, state: int, c: int) -> tuple[_Dfa, int]:
        """Work out (and cache) the DFA transition from ``state`` on character class ``c``;
        the DFA to go on with (a full one is started afresh: memory stays bounded)."""
        with self._lock:  # capture threads and the event loop may match at once
            nxt = dfa.trans[state].get(c)
            if nxt is not None:
                return dfa, nxt
            current = dfa.sets[state]
            if dfa is not self._dfa or len(dfa.sets) >= _MAX_DFA_STATES:
                dfa = self._dfa or dfa
                if len(dfa.sets) >= _MAX_DFA_STATES:
                    dfa = self._dfa = _Dfa(self._nfa)
                state = dfa.add(current)
                got = dfa.trans[state].get(c)
                if got is not None:
                    return dfa, got
            nxt = dfa.add(self._nfa.step(current, c))
            dfa.trans[state][c] = nxt
            return dfa, nxt


class _Nfa:
    """Thompson NFA: per state a kind, an argument, and its successor(s). Once built, sets of
    its consuming states are bit masks, and a step is a few integer operations per state."""

    def __init__(self) -> None:
        self.kind: list[int] = []
        self.arg: list[Any] = []  # _CHAR: a code point; _CLASS: (ranges, negated)
        self.out: list[int] = []
        self.eps: list[list[int]] = []
        self.entry = -1         # the first state
        # Filled by finish():
        self.start = 0          # mask of the states before any character
        self.begin = 0          # ... and after the glob's literal prefix (set by Glob)
        self.follow: list[int] = []  # per state: mask of the states after it consumes (-1:
        #                              not worked out yet)
        self._memo: dict[int, int] = {}
        self.match = 0          # mask of the accepting state
        self.universal = 0      # mask of ".*" loops that accept whatever follows
        self.bounds: list[int] = []  # code points where some state's test changes
        self._accepting: dict[int, int] = {}  # character class -> mask of states taking it

    def state(self, kind: int, arg: Any = None) -> int:
        self.kind.append(kind)
        self.arg.append(arg)
        self.out.append(-1)
        self.eps.append([])
        return len(self.kind) - 1

    def patch(self, tails: list[int], target: int) -> None:
        for t in tails:
            if self.kind[t] == _EPS:
                self.eps[t].append(target)
            else:
                self.out[t] = target

    def finish(self) -> None:
        """Get ready to simulate (once, before the first DFA is made)."""
        self.start = self.begin = self._closure(self.entry)
        self.follow = [-1] * len(self.kind)
        for s, k in enumerate(self.kind):
            if k == _MATCH:
                self.match |= 1 << s
        for s, k in enumerate(self.kind):
            if k == _ANY:
                after = self.follow[s] = self._closure(self.out[s])
                if after >> s & 1 and after & self.match:
                    self.universal |= 1 << s
        points = {_SLASH, _SLASH + 1}
        for k, a in zip(self.kind, self.arg, strict=True):
            if k == _CHAR:
                points.update((a, a + 1))
            elif k == _CLASS:
                for lo, hi in a[0]:
                    points.update((lo, hi + 1))
        self.bounds = sorted(points)

    def _closure(self, s: int) -> int:
        """Mask of the non-epsilon states reachable from ``s`` without consuming (memoised)."""
        memo = self._memo
        got = memo.get(s)
        if got is not None:
            return got
        seen = {s}
        todo = [s]
        mask = 0
        while todo:
            x = todo.pop()
            if self.kind[x] == _EPS:
                for y in self.eps[x]:
                    if y not in seen:
                        seen.add(y)
                        todo.append(y)
            else:
                mask |= 1 << x
        memo[s] = mask
        return mask

    def accepting(self, c: int) -> int:
        """Mask of the states that consume a character of class ``c`` (memoised)."""
        got = self._accepting.get(c)
        if got is None:
            cp = self.bounds[c - 1] if c else 0  # every code point of class c acts alike
            got = 0
            for s, k in enumerate(self.kind):
                if k == _CHAR:
                    ok = self.arg[s] == cp
                elif k == _NOSLASH:
                    ok = cp != _SLASH
                elif k == _ANY:
                    ok = True
                elif k == _CLASS:
                    ranges, negated = self.arg[s]
                    inside = any(lo <= cp <= hi for lo, hi in ranges)
                    ok = (not inside and cp != _SLASH) if negated else inside
                else:
                    ok = False
                if ok:
                    got |= 1 << s
            self._accepting[c] = got
        return got

    def step(self, states: int, c: int) -> int:
        live = states & self.accepting(c)
        out = 0
        follow = self.follow
        while live:
            low = live & -live
            s = low.bit_length() - 1
            f = follow[s]
            if f < 0:
                f = follow[s] = self._closure(self.out[s])
            out |= f
            live ^= low
        return out


class _Dfa:
    """One generation of a glob's lazily built DFA (a state is a mask of NFA states)."""

    __slots__ = ("accept", "fate", "ids", "nfa", "sets", "trans")

    def __init__(self, nfa: _Nfa) -> None:
        self.nfa = nfa
        self.sets: list[int] = []
        self.ids: dict[int, int] = {}
        self.trans: list[dict[int, int]] = []
        self.accept: list[bool] = []
        self.fate: list[int] = []
        self.add(nfa.begin)

    def add(self, states: int) -> int:
        known = self.ids.get(states)
        if known is not None:
            return known
        nfa = self.nfa
        fate = _DEAD if not states else _ACCEPT_ALL if states & nfa.universal else _OPEN
        # Appended before the id is published: a reader never sees a half-made state.
        self.sets.append(states)
        self.trans.append({})
        self.accept.append(bool(states & nfa.match))
        self.fate.append(fate)
        n = len(self.sets) - 1
        self.ids[states] = n
        return n


def _chunks_match(segment: str, chunks: tuple[str, ...]) -> bool:
    """Whether ``segment`` matches ``"*".join(chunks)`` (literal chunks, no "/"): the first
    and last chunk anchored, each other one at its leftmost place after the previous."""
    first, last = chunks[0], chunks[-1]
    if len(chunks) == 1:
        return segment == first
    end = len(segment) - len(last)
    if end < len(first) or not segment.startswith(first) or not segment.endswith(last):
        return False
    pos = len(first)
    for chunk in chunks[1:-1]:
        at = segment.find(chunk, pos, end)
        if at < 0:
            return False
        pos = at + len(chunk)
    return True


def _parse(glob: str) -> tuple[_Nfa, str, str, str, bool]:
    """Compile ``glob`` to an NFA; also what every matching path holds (its literal prefix,
    suffix, and longest literal run), and whether it is a plain literal. Iterative (braces
    use an explicit stack)."""
    g = glob.lstrip("/")
    off = len(glob) - len(g)  # columns are counted in the glob as written
    if not g:
        _fail("empty glob")
    if len(glob) > MAX_GLOB_LENGTH:
        _fail(f"too long: {len(glob)} characters (limit {MAX_GLOB_LENGTH})")
    nfa = _Nfa()

    def new_seq() -> tuple[int, list[int]]:
        e = nfa.state(_EPS)
        return e, [e]

    start, tails = new_seq()
    # Per open brace: (sequence before it, its alternatives so far, its column).
    stack: list[tuple[int, list[int], list[tuple[int, list[int]]], int]] = []
    prefix: list[str] = []
    suffix: list[str] = []  # the current run of literal characters outside braces
    needle = ""
    literal = True  # nothing but literal characters so far
    wildcards = alternatives = 0

    def add(kind: int, arg: Any = None) -> None:
        nonlocal tails
        s = nfa.state(kind, arg)
        nfa.patch(tails, s)
        tails = [s]

    def loop(kind: int) -> None:  # X* for a one-character X
        nonlocal tails
        head = nfa.state(_EPS)
        body = nfa.state(kind)
        nfa.eps[head].append(body)
        nfa.out[body] = head
        nfa.patch(tails, head)
        tails = [head]

    def special() -> None:
        nonlocal literal, needle
        literal = False
        if len(suffix) > len(needle):
            needle = "".join(suffix)
        suffix.clear()

    i, n = 0, len(g)
    while i < n:
        c = g[i]
        col = i + 1 + off
        if c in "*?[":
            special()
            wildcards += 1
            if wildcards > MAX_WILDCARDS:
                _fail(f"too many wildcards (limit {MAX_WILDCARDS}) (at column {col})")
        if c == "*":
            if g.startswith("**", i):
                before_ok = i == 0 or g[i - 1] == "/"
                after = g[i + 2: i + 3]
                if before_ok and after == "/":  # zero or more whole segments: ([^/]*/)*
                    head = nfa.state(_EPS)
                    seg = nfa.state(_EPS)
                    body = nfa.state(_NOSLASH)
                    slash = nfa.state(_CHAR, _SLASH)
                    nfa.eps[head].append(seg)
                    nfa.eps[seg] += [body, slash]
                    nfa.out[body] = seg
                    nfa.out[slash] = head
                    nfa.patch(tails, head)
                    tails = [head]
                    i += 3
                    continue
                if before_ok and after == "":  # everything below: .*
                    loop(_ANY)
                    i += 2
                    continue
                _fail(f"'**' must be a whole path segment (at column {col})")
            loop(_NOSLASH)
        elif c == "?":
            add(_NOSLASH)
        elif c == "[":
            j = i + 1
            if j < n and g[j] in "!^":
                j += 1
            if j < n and g[j] == "]":
                j += 1
            while j < n and g[j] != "]":
                j += 1
            if j >= n:
                _fail(f"unclosed '[' (at column {col})")
            body_text = g[i + 1: j]
            negated = body_text[:1] in ("!", "^")
            if negated:
                body_text = body_text[1:]
            add(_CLASS, (_ranges(body_text, col), negated))
            i = j
        elif c == "{":
            special()
            if len(stack) >= MAX_BRACE_DEPTH:
                _fail(f"braces nested deeper than {MAX_BRACE_DEPTH} "
                                f"(limit {MAX_BRACE_DEPTH}) (at column {col})")
            stack.append((start, tails, [], col))
            start, tails = new_seq()
        elif c == "}" and stack:
            special()
            outer_start, outer_tails, alts, _col = stack.pop()
            alts.append((start, tails))
            alternatives += len(alts)
            if alternatives > MAX_ALTERNATIVES:
                _fail(f"too many brace alternatives (limit {MAX_ALTERNATIVES}) "
                                f"(at column {col})")
            fork = nfa.state(_EPS)
            nfa.eps[fork] += [s for s, _t in alts]
            nfa.patch(outer_tails, fork)
            start, tails = outer_start, [t for _s, ts in alts for t in ts]
        elif c == "}":
            _fail(f"unmatched '}}' (at column {col})")
        elif c == "," and stack:
            stack[-1][2].append((start, tails))
            start, tails = new_seq()
        else:
            if c == "\\" and i + 1 < n:
                i += 1
                c = g[i]
            add(_CHAR, ord(c))
            if not stack:
                if literal:
                    prefix.append(c)
                suffix.append(c)
        if stack:
            special()
        i += 1
    if stack:
        _fail(f"unclosed '{{' (at column {stack[-1][3]})")
    nfa.patch(tails, nfa.state(_MATCH))
    nfa.entry = start
    return nfa, "".join(prefix), "".join(suffix), needle, literal


def _ranges(body: str, col: int) -> tuple[tuple[int, int], ...]:
    """The code point ranges of a ``[...]`` body (``a-z``; a ``-`` first or last is itself;
    a backslash is itself)."""
    out: list[tuple[int, int]] = []
    k, n = 0, len(body)
    while k < n:
        lo = body[k]
        if k + 2 < n and body[k + 1] == "-":
            hi = body[k + 2]
            if lo > hi:
                _fail(f"bad range '{lo}-{hi}' in '[...]' (at column {col})")
            out.append((ord(lo), ord(hi)))
            k += 3
        else:
            out.append((ord(lo), ord(lo)))
            k += 1
    return tuple(out)
