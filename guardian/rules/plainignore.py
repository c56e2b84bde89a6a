"""What a ``.gitignore`` of plain patterns ignores, answered without pathspec.

:mod:`guardian.rules.ignore` asks pathspec's ``GitIgnoreSpec``, which costs ~10 ms to import
and turns each pattern into a regular expression (they backtrack). An agent hook runs on
every tool call within a budget of a few milliseconds, so its lean path
(:mod:`guardian.agents.lean`) asks here instead, for the patterns most ignore files hold:
names and globs of ``*``, ``?`` and sets of letters and digits (``*.pyc``, ``*.py[cod]``,
``build/``, ``/dist``, ``docs/_build/``, ``**/node_modules``, ``logs/**``). For those the
answer is exactly pathspec's (a differential test holds it to that); any other line (a ``!``
re-include, a ``\\`` escape, a negated or unusual set, an empty segment) raises
:class:`NotPlain`, and the caller takes the full path.

Without re-includes, a path is ignored when any pattern of an ignore file above it matches
it or one of its parent directories: the order of the patterns, and which file they are in,
no longer matter. Matching works on whole path segments, state by state (a set of segment
positions per pattern segment), and a glob within a segment is matched by the two-pointer
method: time bounded by the product of the lengths, never exponential.
"""

from __future__ import annotations

import os

#: One character a segment glob matches: itself, ``"?"`` (any), or one of a set.
Token = str | frozenset[str]
#: A segment glob: its tokens, ``"*"`` among them for any run of characters; a glob that is
#: exactly ``*`` is :data:`_SOME` (pathspec makes it ``[^/]+``: one character at least).
Glob = tuple[Token, ...]
#: A pattern as pathspec normalises it: its segments (``"**"`` or a segment glob), or one of
#: pathspec's special cases: ``"."`` matches every path, ``"/"`` every path below the top
#: directory (``**/``, ``*/``).
Pattern = tuple["Glob | str", ...] | str
_ANY, _BELOW = ".", "/"
_SOME: Glob = ("?", "*")
#: What a plain set may hold: letters, digits and a few more (no "]", "[", "^", "\\", ":").
_SET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.$~")
#: An ignore file bigger than this is not read here (the full path reads it).
MAX_BYTES = 1024 * 1024


class NotPlain(Exception):
    """An ignore file holds a line this module does not answer for."""


def compile_lines(text: str) -> list[Pattern]:
    """The patterns of an ignore file's text (those of its lines that ignore something);
    NotPlain if any line is not plain."""
    out: list[Pattern] = []
    for raw in text.splitlines():  # as guardian.rules.ignore splits them
        line = raw.rstrip()  # pathspec keeps "\ " (an escaped space): "\" is not plain
        if not line or line.startswith("#") or line == "/":
            continue
        if line.startswith("!") or "\\" in line:
            raise NotPlain(line)
        out.append(_normalise(line))
    return out


def _normalise(line: str) -> Pattern:
    """pathspec's ``GitIgnoreSpecPattern`` normalisation of one plain line."""
    segs = line.split("/")
    is_dir = not segs[-1]
    if not segs[0]:
        del segs[0]  # "/x": relative to the ignore file's directory
    elif (len(segs) == 1 or (len(segs) == 2 and not segs[1])) and segs[0] != "**":
        segs.insert(0, "**")  # "x" and "x/": at any depth
    if not segs:
        raise NotPlain(line)
    if not segs[-1]:
        segs[-1] = "**"  # "x/": everything below a directory x
    i = len(segs) - 1
    while i > 0:
        if segs[i] == "**" and segs[i - 1] == "**":
            del segs[i]
        i -= 1
    if "" in segs:
        raise NotPlain(line)  # "a//b"
    if segs == ["**"]:
        return _BELOW if is_dir else _ANY
    if segs == ["**", "*"]:
        return _ANY
    if segs == ["**", "*", "**"]:
        return _BELOW
    return tuple(s if s == "**" else _SOME if s == "*" else _tokens(s, line) for s in segs)


def _tokens(seg: str, line: str) -> Glob:
    """pathspec's ``_translate_segment_glob`` of a plain segment, as tokens."""
    out: list[Token] = []
    i = 0
    while i < len(seg):
        c = seg[i]
        i += 1
        if c != "[":
            out.append(c)  # "*", "?" or the character itself ("]" alone is one)
            continue
        j = seg.find("]", i)
        body = seg[i:j] if j >= 0 else ""
        if not body or not _SET_CHARS.issuperset(body.replace("-", "")) \
                or body.startswith("-") or body.endswith("-") or "--" in body:
            raise NotPlain(line)  # unclosed, negated, empty or unusual: the full path's
        chars: set[str] = set()
        k = 0
        while k < len(body):
            if k + 2 < len(body) and body[k + 1] == "-":
                lo, hi = ord(body[k]), ord(body[k + 2])
                if lo > hi:
                    raise NotPlain(line)  # a reversed range: pathspec fails on the file
                chars.update(map(chr, range(lo, hi + 1)))  # within ASCII: at most 128
                k += 3
            else:
                chars.add(body[k])
                k += 1
        out.append(frozenset(chars))
        i = j + 1
    return tuple(out)


def _one(tok: Token, ch: str) -> bool:
    if isinstance(tok, str):
        return tok == "?" or tok == ch
    return ch in tok


def _glob(glob: Glob, name: str) -> bool:
    """Whether one segment glob matches all of ``name`` (each token but ``*`` matches one
    character; ``*`` any run: the last one met is moved on, never a backtrack tree)."""
    if name and glob:  # most names fail on their first or last character: say so at once
        if glob[0] != "*" and not _one(glob[0], name[0]):
            return False
        if glob[-1] != "*" and not _one(glob[-1], name[-1]):
            return False
    g = n = 0
    star = mark = -1
    while n < len(name):
        if g < len(glob) and glob[g] != "*" and _one(glob[g], name[n]):
            g += 1
            n += 1
        elif g < len(glob) and glob[g] == "*":
            star, mark = g, n
            g += 1
        elif star >= 0:
            g = star + 1
            mark += 1
            n = mark
        else:
            return False
    while g < len(glob) and glob[g] == "*":
        g += 1
    return g == len(glob)


def matches(pattern: Pattern, text: str) -> bool:
    """Whether ``pattern`` matches ``text``: a path relative to its ignore file's directory,
    with a trailing ``/`` when it is a directory (as guardian.rules.ignore asks pathspec)."""
    if pattern == _ANY:
        return bool(text)
    if pattern == _BELOW:
        return "/" in text
    comps = text.split("/")
    n, end = len(comps), len(pattern) - 1
    i = 0
    if pattern[0] == "**":
        at = set(range(n))  # "^(?:.+/)?": any number of leading segments skipped
        i = 1
    else:
        at = {0}
    while True:
        seg = pattern[i]
        assert not isinstance(seg, str)
        hit = {j for j in at if _glob(seg, comps[j])}
        if not hit:
            return False
        if i == end:
            return True
        if pattern[i + 1] == "**":
            if i + 1 == end:  # "x/**": something below x
                return any(j + 1 < n for j in hit)
            first = min(hit) + 1  # "(?:/.+)?/": any number of segments skipped
            at = set(range(first, n))
            i += 2
        else:
            at = {j + 1 for j in hit if j + 1 < n}
            i += 1
        if not at:
            return False


def read_ignore_file(path: str | bytes) -> str | None:
    """The text of an ignore file as guardian.rules.ignore reads it; None where it reads
    nothing (absent, unreadable, a directory). NotPlain for what it would read otherwise
    than this (a FIFO or device: it would block; a symlink it follows; a huge file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        if os.path.islink(path):
            raise NotPlain("a symlinked ignore file") from None
        return None
    try:
        st = os.fstat(fd)
        if (st.st_mode & 0o170000) == 0o040000:
            return None  # open() of a directory fails: skipped
        if (st.st_mode & 0o170000) != 0o100000 or st.st_size > MAX_BYTES:
            raise NotPlain("an odd ignore file")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "surrogateescape")


class _Children:
    """An ignore file's patterns, sorted for a walk asking about the children of directories
    it knows are not ignored: then a pattern of one segment at any depth (``name``,
    ``*.pyc``) can only match the child's own name (had it matched a directory above, that
    directory would have been ignored, and not walked into), and one ending in a slash
    (``build/``) only a child that is a directory. Names and ``*suffix`` globs are a set and
    a tuple; the rest are matched in full."""

    def __init__(self, patterns: list[Pattern]) -> None:
        names: tuple[set[str], set[str]] = (set(), set())
        suffixes: tuple[list[str], list[str]] = ([], [])
        self.globs: tuple[list[Glob], list[Glob]] = ([], [])
        #: The rest, each with the literal first segment a path must start with, if any.
        self.full: list[tuple[str | None, Pattern]] = []
        for p in patterns:
            dirs = len(p) == 3 and p[2] == "**"
            if isinstance(p, str) or p[0] != "**" or len(p) not in (2, 3) \
                    or (len(p) == 3 and not dirs) or isinstance(p[1], str) or _glob(p[1], ""):
                # Anchored, several segments, or matching "" itself.
                first = None if isinstance(p, str) or p[0] == "**" else _literal(p[0])
                self.full.append((first, p))
                continue
            g = p[1]
            name = _literal(g)
            if name is not None:
                names[dirs].add(name)
            elif g[0] == "*" and all(isinstance(t, str) and t not in "*?" for t in g[1:]):
                suffixes[dirs].append("".join(str(t) for t in g[1:]))
            else:
                self.globs[dirs].append(g)
        self.names = (frozenset(names[0]), frozenset(names[1]))
        self.suffixes = (tuple(suffixes[0]), tuple(suffixes[1]))

    def match(self, name: str, sub: str, is_dir: bool) -> bool:
        """Whether a pattern matches the child ``name`` (``sub`` its path relative to the
        ignore file's directory)."""
        for dirs in (0, 1) if is_dir else (0,):
            if name in self.names[dirs] or (self.suffixes[dirs] and name.endswith(
                    self.suffixes[dirs])):
                return True
            for g in self.globs[dirs]:
                if _glob(g, name):
                    return True
        for first, p in self.full:
            if first is not None and not (sub == first or sub.startswith(first + "/")):
                continue  # "docs/_build/" is nothing outside docs
            if matches(p, sub + "/" if is_dir else sub):
                return True
        return False


def _literal(seg: Glob | str) -> str | None:
    """The name a segment glob matches, if it matches only one."""
    if isinstance(seg, str) or not all(isinstance(t, str) and t not in "*?" for t in seg):
        return None
    return "".join(str(t) for t in seg)


class PlainIgnore:
    """The ignore files of one root, read on demand: ``.git/info/exclude`` and the root's
    ``.gitignore`` apply from the root, each directory's ``.gitignore`` below it."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._patterns: dict[str, list[Pattern]] = {}
        self._children: dict[str, _Children] = {}

    def patterns(self, d: str) -> list[Pattern]:
        """The patterns of directory ``d`` ("" the root); NotPlain if any is not plain."""
        got = self._patterns.get(d)
        if got is None:
            base = os.path.join(self.root, d) if d else self.root
            files = [os.path.join(base, ".gitignore")]
            if not d:
                files.insert(0, os.path.join(base, ".git", "info", "exclude"))
            got = []
            for f in files:
                text = read_ignore_file(f)
                if text is not None:
                    got += compile_lines(text)
            self._patterns[d] = got
        return got

    def any_in(self, d: str) -> bool:
        return bool(self.patterns(d))

    def child_ignored(self, parents: tuple[str, ...], rel: str, *, is_dir: bool) -> bool:
        """Whether ``rel`` is ignored by the ignore files of ``parents`` (the directories
        above it that hold patterns), the directories above it being known not to be (a
        walk's question: it does not walk into an ignored directory)."""
        name = rel.rpartition("/")[2]
        for d in parents:
            children = self._children.get(d)
            if children is None:
                children = self._children[d] = _Children(self.patterns(d))
            if children.match(name, rel[len(d) + 1:] if d else rel, is_dir):
                return True
        return False

    def ignored(self, rel: str, *, is_dir: bool = False) -> bool:
        """Whether ``rel`` (or a directory above it) is ignored by a ``.gitignore`` or the
        exclude file (names Guardian ignores itself are the caller's)."""
        parts = rel.split("/")
        parents: list[str] = []
        for k in range(len(parts)):
            d = "/".join(parts[:k])
            if self.any_in(d):
                parents.append(d)
            sub_is_dir = is_dir or k < len(parts) - 1
            for dd in parents:  # outermost first: the directories above, as a walk does
                sub = "/".join(parts[len(dd.split("/")) if dd else 0:k + 1])
                text = sub + "/" if sub_is_dir else sub
                if any(matches(p, text) for p in self._patterns[dd]):
                    return True
        return False
