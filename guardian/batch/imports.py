"""Dependency consistency: a batch must not break a Python import that resolved before it.

After the batch is applied in memory, every import inside a watched root that resolved to a
module of the root before the batch must still resolve: a module the batch deletes (or
renames: a delete and a write) while another file imports it, a package whose
``__init__.py`` it removes, a name ``from x import name`` that it removes from ``x``. Each
break is ``importer:line:col: imports X, which this batch removes``; the batch is refused
unless the importer's rules say ``broken_imports = "warn"``.

Everything is static: files are parsed with :mod:`ast` (never imported or run), each at
most :data:`MAX_PARSE_BYTES`, and the whole check stops after :data:`TIME_BUDGET_S` (then
it warns that it is incomplete, and refuses nothing it did not see). The layout is Python's
own: a directory is a package when it holds ``__init__.py`` (a namespace package is never
"resolved", so never broken); absolute imports are looked up from the root, its ``src/``
and the directory above the importer's top-level package; imports guarded by ``try: ...
except ImportError`` are optional and not checked.

What it costs: the batch's own ``.py`` targets are parsed (old and new content) to learn
which modules and names go away; only when some do is the root walked for importers, each
file first matched by a regex for the names that go (in C), parsed only on a hit, and
remembered per root by (inode, size, mtime), so a daemon parses a file once.
"""

from __future__ import annotations

import ast
import os
import re
import stat
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from guardian.batch.target import Target
from guardian.paths import SEP, Root, show

if TYPE_CHECKING:
    from guardian.writer import Writer

#: A Python file larger than this is not parsed: its imports are not checked, and every name
#: is taken to be still defined (``ast`` builds ~100 bytes of objects per byte of source).
MAX_PARSE_BYTES = 1024 * 1024
#: The whole check stops after this long (a huge tree): it then warns, never refuses.
TIME_BUDGET_S = 5.0
INIT = b"__init__.py"


@dataclass(frozen=True)
class ImportRef:
    """One import statement's target: ``from .a import b`` is level 1, module "a", names
    ("b",); ``import a.b`` is level 0, module "a.b", names None."""

    line: int
    column: int
    level: int
    module: str | None
    names: tuple[str, ...] | None


@dataclass(frozen=True)
class Break:
    """An import the batch breaks, and the target whose change breaks it."""

    root: Root
    importer: bytes
    ref: ImportRef
    what: str            # the dotted name that no longer resolves
    cause: Target

    @property
    def message(self) -> str:
        return (f"{show(self.root.join(self.importer))}:{self.ref.line}:{self.ref.column}: "
                f"imports {self.what}, which this batch removes")

    def to_json(self) -> dict[str, object]:
        return {"path": show(self.root.join(self.importer)), "line": self.ref.line,
                "column": self.ref.column, "imports": self.what, "message": self.message,
                "removed_by": self.cause.shown}


WILDCARD: frozenset[str] = frozenset({"*"})  # a module whose names cannot be known


def check(writer: Writer, targets: list[Target]) -> list[dict[str, object]]:
    """Refuse the batch (BatchError, category ``validation``) if it breaks an import whose
    importer's rules do not downgrade it; return the downgraded ones (and a note when the
    check ran out of time) as warnings."""
    deadline = time.monotonic() + TIME_BUDGET_S
    by_root: dict[int, list[Target]] = {}
    for t in targets:
        if (not t.unchanged and not t.final_dir and t.relpath.endswith(b".py")
                and t.kind in ("file", "absent")):
            by_root.setdefault(t.root.id, []).append(t)
    warned: list[dict[str, object]] = []
    refused: list[Break] = []
    for touched in by_root.values():
        root = touched[0].root
        layout = _Layout(root, {t.relpath: t for t in touched})
        breaks, complete = layout.breaks(writer, deadline)
        if not complete:
            warned.append({"path": str(root.path), "line": None, "column": None,
                           "message": f"{root.path}: the import check stopped after "
                                      f"{TIME_BUDGET_S:g}s; imports not read were not checked"})
        for b in breaks:
            mode = writer.policy.effective(root.id, b.importer).get("broken_imports", "refuse")
            if mode == "warn":
                warned.append(b.to_json())
            else:
                refused.append(b)
    if refused:
        first = refused[0]
        shown = "; ".join(b.message for b in refused[:3])
        more = f" (+{len(refused) - 3} more)" if len(refused) > 3 else ""
        e = first.cause.error(f"{shown}{more} (a rule with broken_imports = \"warn\" lets "
                              "it through)", "validation")
        e.path, e.line, e.column = show(first.root.join(first.importer)), first.ref.line, \
            first.ref.column
        raise e
    return warned


class _Layout:
    """One root before and after the batch: which files exist, what they hold."""

    def __init__(self, root: Root, changes: dict[bytes, Target]) -> None:
        self.root = root
        self.changes = changes
        self._disk: dict[bytes, bool] = {}
        self._names: dict[tuple[bytes, bool], frozenset[str]] = {}

    # -- files
    def exists(self, rel: bytes, after: bool) -> bool:
        t = self.changes.get(rel)
        if t is not None:
            return (t.final is not None) if after else t.kind == "file"
        found = self._disk.get(rel)
        if found is None:
            try:
                found = stat.S_ISREG(os.lstat(self.root.join(rel)).st_mode)
            except OSError:
                found = False
            self._disk[rel] = found
        return found

    def content(self, rel: bytes, after: bool) -> bytes | None:
        t = self.changes.get(rel)
        if t is not None:
            return t.final if after else t.current
        return _read(self.root.join(rel))

    def names(self, rel: bytes, after: bool) -> frozenset[str]:
        if rel not in self.changes:
            after = False  # the same file either side
        key = (rel, after)
        found = self._names.get(key)
        if found is None:
            data = self.content(rel, after)
            found = self._names[key] = WILDCARD if data is None else bound_names(data)
        return found

    # -- what goes away
    def _removals(self) -> tuple[set[str], set[bytes]]:
        """Words an importer of something removed must contain (module and name), and the
        packages whose ``__init__.py`` goes (every file under one is a candidate)."""
        words: set[str] = set()
        packages: set[bytes] = set()
        for rel, t in self.changes.items():
            before, after = t.kind == "file", t.final is not None
            d, _, name = rel.rpartition(SEP)
            stem = os.fsdecode(name[:-3])
            if name == INIT:
                stem = os.fsdecode(d.rpartition(SEP)[2])
            if before and not after:
                words.add(stem)
                if name == INIT:
                    packages.add(d)
            elif before and after:
                assert t.current is not None and t.final is not None
                quick = lost_names(t.current, t.final)  # no parse: the common case
                if quick is not None:
                    words.update(n for n in quick if n != "*")
                    continue
                old, new = self.names(rel, False), self.names(rel, True)
                if new is not WILDCARD and "*" not in new and old is not WILDCARD:
                    words.update(n for n in old - new if n != "*")
            elif name == INIT and d and self.exists(d + b".py", False):
                words.add(stem)  # a new package now shadows the module d.py
        return words, packages

    def breaks(self, writer: Writer, deadline: float) -> tuple[list[Break], bool]:
        words, packages = self._removals()
        if not words and not packages:
            return [], True
        pattern = re.compile(rb"\b(?:" + b"|".join(
            re.escape(os.fsencode(w)) for w in sorted(words)) + rb")\b") if words else None
        out: list[Break] = []
        for rel, refs in self._importers(writer, pattern, packages, deadline):
            if refs is None:
                return out, False
            for ref in refs:
                out.extend(self._check_ref(rel, ref))
        return out, True

    def _importers(self, writer: Writer, pattern: re.Pattern[bytes] | None,
                   packages: set[bytes], deadline: float
                   ) -> Iterator[tuple[bytes, tuple[ImportRef, ...] | None]]:
        """(relpath, imports after the batch) of each file that may import what goes;
        (_, None) once the time budget is spent. A file on disk is read only if it is not
        in the cache, and parsed only if it mentions a word of ``pattern`` (or lies in a
        package that loses its ``__init__.py``)."""
        for rel, t in self.changes.items():
            inside = any(not p or rel.startswith(p + SEP) for p in packages)
            if t.final is not None and (inside or (pattern is not None
                                                   and pattern.search(t.final))):
                yield rel, imports(t.final)
        from guardian.capture.scan import WalkReport, walk

        ignore = writer.recorder.ignore[self.root.id]
        for rel, st in walk(self.root.bpath, b"", ignore, WalkReport()):
            if time.monotonic() > deadline:
                yield rel, None
                return
            if (rel in self.changes or not rel.endswith(b".py") or not stat.S_ISREG(st.st_mode)
                    or st.st_size > MAX_PARSE_BYTES):
                continue
            inside = any(not p or rel.startswith(p + SEP) for p in packages)
            refs = _cache_get(self.root.bpath, rel, st)
            if refs is None:
                data = _read(self.root.join(rel))
                if data is None or b"import" not in data:
                    continue
                if not inside and (pattern is None or not pattern.search(data)):
                    continue
                refs = imports(data)
                _cache_put(self.root.bpath, rel, st, refs)
            if refs:
                yield rel, refs

    # -- resolution
    def _check_ref(self, importer: bytes, ref: ImportRef) -> Iterator[Break]:
        parts = ref.module.split(".") if ref.module else []
        bases = self._bases(importer, ref)
        for i, (base, chain) in enumerate(bases):
            before = self._find(base, chain, parts, after=False)
            if before is None:
                continue
            mod_name = _dotted(before)
            # After the batch it may be found further along the path (as Python would).
            after = next((f for b, c in bases[i:]
                          if (f := self._find(b, c, parts, after=True)) is not None), None)
            if after is None:
                cause = self._cause(base, chain, parts)
                if cause is not None:
                    yield Break(self.root, importer, ref, mod_name, cause)
                return
            for n in ref.names or ():
                if n == "*":
                    continue
                old = self.names(before, False)
                if not (self._submodule(before, n, after=False) or n in old):
                    continue  # never resolved (or not knowably: a star import, __getattr__)
                if self._submodule(after, n, after=True) or n in self.names(after, True) or \
                        "*" in self.names(after, True):
                    continue
                cause = self._cause(base, chain, [*parts, n]) or self.changes.get(after)
                if cause is not None:
                    yield Break(self.root, importer, ref, f"{mod_name}.{n}" if mod_name else n,
                                cause)
            return

    def _bases(self, importer: bytes, ref: ImportRef) -> list[tuple[bytes, list[bytes]]]:
        """Where to look the module up (root-relative directories; b"" is the root), each
        with the package directories a relative import needs to stay packages."""
        d = importer.rpartition(SEP)[0]
        if ref.level:
            chain = [d]
            for _ in range(ref.level - 1):
                if not d:
                    return []  # above the root
                d = d.rpartition(SEP)[0]
                chain.append(d)
            if not all(c and self.exists(_join(c, INIT), False) for c in chain):
                return []  # not inside a package: the python validator says so
            return [(d, chain)]
        top = d
        while top and self.exists(_join(top, INIT), False):
            top = top.rpartition(SEP)[0]
        bases = [b"", top] + ([] if self.exists(b"src/" + INIT, False) else [b"src"])
        return [(b, []) for b in dict.fromkeys(bases)]

    def _find(self, base: bytes, chain: list[bytes], parts: list[str], *,
              after: bool) -> bytes | None:
        """The file module ``parts`` under ``base`` is (a package's ``__init__.py``)."""
        if not all(self.exists(_join(c, INIT), after) for c in chain):
            return None
        if not parts:  # ``from . import x``: the package itself
            return _join(base, INIT)
        d = base
        for p in parts[:-1]:
            d = _join(d, os.fsencode(p))
            if not self.exists(_join(d, INIT), after):
                return None
        last = _join(d, os.fsencode(parts[-1]))
        for candidate in (last + SEP + INIT, last + b".py"):
            if self.exists(candidate, after):
                return candidate
        return None

    def _submodule(self, module_file: bytes, name: str, *, after: bool) -> bool:
        if module_file != INIT and not module_file.endswith(SEP + INIT):
            return False
        sub = _join(module_file[: -len(INIT)].rstrip(SEP), os.fsencode(name))
        return self.exists(sub + SEP + INIT, after) or self.exists(sub + b".py", after)

    def _cause(self, base: bytes, chain: list[bytes], parts: list[str]) -> Target | None:
        """The batch's target whose change is behind a break: a deleted module or
        ``__init__.py`` on the way first, else the deepest changed one."""
        candidates = [_join(c, INIT) for c in chain]
        d = base
        for p in parts:
            d = _join(d, os.fsencode(p))
            candidates += [d + SEP + INIT, d + b".py"]
        changed = [t for c in candidates if (t := self.changes.get(c)) is not None]
        gone = [t for t in changed if t.kind == "file" and t.final is None]
        return gone[0] if gone else (changed[-1] if changed else None)


def _join(d: bytes, name: bytes) -> bytes:
    return d + SEP + name if d else name


def _dotted(module_file: bytes) -> str:
    """``pkg/sub/mod.py`` -> ``pkg.sub.mod``; ``pkg/__init__.py`` -> ``pkg``."""
    rel = module_file[: -len(INIT) - 1] if module_file.endswith(SEP + INIT) else (
        b"" if module_file == INIT else module_file[:-3])
    return os.fsdecode(rel).replace("/", ".")


def _read(path: bytes) -> bytes | None:
    """A regular file's bytes (at most MAX_PARSE_BYTES), never following a link or
    waiting on a FIFO; None if it is not one or cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_PARSE_BYTES:
            return None
        chunks = []
        size = 0
        while size <= MAX_PARSE_BYTES and (chunk := os.read(fd, 1 << 20)):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks) if size <= MAX_PARSE_BYTES else None
    except OSError:
        return None
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- parsing
_cache_lock = threading.Lock()
_cache: dict[tuple[bytes, bytes], tuple[tuple[int, int, int], tuple[ImportRef, ...]]] = {}
#: Entries kept per process (a few hundred bytes each).
MAX_CACHED = 200_000


def _sig(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _cache_get(root: bytes, rel: bytes, st: os.stat_result) -> tuple[ImportRef, ...] | None:
    with _cache_lock:
        hit = _cache.get((root, rel))
    return hit[1] if hit is not None and hit[0] == _sig(st) else None


def _cache_put(root: bytes, rel: bytes, st: os.stat_result, refs: tuple[ImportRef, ...]) -> None:
    with _cache_lock:
        if len(_cache) >= MAX_CACHED:
            _cache.clear()
        _cache[(root, rel)] = (_sig(st), refs)


def _parse(data: bytes) -> ast.Module | None:
    from guardian.validation.validators.python import _warnings_lock

    if len(data) > MAX_PARSE_BYTES:
        return None
    with _warnings_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            tree = compile(data, "<import check>", "exec", ast.PyCF_ONLY_AST,
                           dont_inherit=True)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            return None
    return tree if isinstance(tree, ast.Module) else None


def imports(data: bytes) -> tuple[ImportRef, ...]:
    """Every import statement of a module that is not optional (inside ``try`` with an
    ``except ImportError``, ``ModuleNotFoundError``, ``Exception`` or bare handler)."""
    tree = _parse(data)
    if tree is None:
        return ()
    out: list[ImportRef] = []
    lines: list[bytes] | None = None
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            if lines is None:
                lines = data.splitlines()
            col = _column(lines, node.lineno, node.col_offset)
            if isinstance(node, ast.Import):
                out.extend(ImportRef(node.lineno, col, 0, a.name, None) for a in node.names)
            else:
                out.append(ImportRef(node.lineno, col, node.level, node.module,
                                     tuple(a.name for a in node.names)))
            continue
        if isinstance(node, ast.Try | ast.TryStar) and any(_catches_import_error(h)
                                                           for h in node.handlers):
            stack.extend(node.handlers)
            stack.extend(node.orelse)
            stack.extend(node.finalbody)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return tuple(sorted(out, key=lambda r: (r.line, r.column)))


def _catches_import_error(h: ast.ExceptHandler) -> bool:
    if h.type is None:
        return True
    names = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
    return any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError",
                                                     "Exception", "BaseException")
               for n in names)


def _column(lines: list[bytes], line: int, offset: int) -> int:
    """AST columns are UTF-8 byte offsets; users count characters."""
    if line > len(lines):
        return offset + 1
    return len(lines[line - 1][:offset].decode("utf-8", "replace")) + 1


def bound_names(data: bytes) -> frozenset[str]:
    """The names a module binds at its top level (including under ``if``/``try``/``with``),
    or :data:`WILDCARD` when they cannot be known (unparsable, too large, a module
    ``__getattr__``, ``globals()`` updates). A ``from x import *`` adds ``*``."""
    tree = _parse(data)
    if tree is None:
        return WILDCARD
    names: set[str] = set()
    stack: list[ast.stmt] = list(reversed(tree.body))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign | ast.For
                        | ast.AsyncFor):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(_target_names(targets))
        elif isinstance(node, ast.Import):
            names.update((a.asname or a.name.split(".")[0]) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.update((a.asname or a.name) for a in node.names)
        elif isinstance(node, ast.With | ast.AsyncWith):
            names.update(_target_names([i.optional_vars for i in node.items
                                        if i.optional_vars is not None]))
        if isinstance(node, ast.If | ast.For | ast.AsyncFor | ast.While | ast.With
                      | ast.AsyncWith):
            stack.extend(node.body)
            stack.extend(getattr(node, "orelse", []))
        elif isinstance(node, ast.Try | ast.TryStar):
            stack.extend(node.body)
            stack.extend(node.orelse)
            stack.extend(node.finalbody)
            for h in node.handlers:
                if h.name:
                    names.add(h.name)
                stack.extend(h.body)
        elif isinstance(node, ast.Match):
            for case in node.cases:
                stack.extend(case.body)
    if "__getattr__" in names or b"globals()" in data:
        return WILDCARD
    if b":=" in data:  # a walrus at module level binds too (rare: walked only then)
        names.update(n.target.id for n in ast.walk(tree)
                     if isinstance(n, ast.NamedExpr) and isinstance(n.target, ast.Name))
    return frozenset(names)


def _target_names(targets: list[ast.expr]) -> set[str]:
    """The names an assignment target binds (``a.b = 1`` and ``a[0] = 1`` bind none)."""
    out: set[str] = set()
    stack = list(targets)
    while stack:
        t = stack.pop()
        if isinstance(t, ast.Name):
            out.add(t.id)
        elif isinstance(t, ast.Tuple | ast.List):
            stack.extend(t.elts)
        elif isinstance(t, ast.Starred):
            stack.append(t.value)
    return out


_QUICK_LINE = re.compile(
    rb"(?:async[ \t]+)?def[ \t]+(\w+)|class[ \t]+(\w+)"
    rb"|([A-Za-z_]\w*)[ \t]*(?::[^=\n]*)?(?:[-+*/%&|^@]|//|\*\*|<<|>>)?=(?!=)"
    rb"|(import|from)[ \t]"
    rb"|[A-Za-z_][\w.]*[ \t]*\(|[A-Za-z_]\w*(?:\.\w+)+[ \t]*=(?!=)")  # calls, attributes
_CHAINED = re.compile(rb"[^(\[{\'\"#\n]*?(?<![=!<>])=(?!=)")
_IMPORT = re.compile(rb"import[ \t]+(.+)|from[ \t]+[\w.]+[ \t]+import[ \t]+(.+)")
_SIMPLE_NAMES = re.compile(rb"[\w.]+(?:[ \t]+as[ \t]+\w+)?(?:[ \t]*,[ \t]*[\w.]+"
                           rb"(?:[ \t]+as[ \t]+\w+)?)*[ \t]*(?:#.*)?")


_STRINGS = re.compile(rb'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'')
_NOT_TOP = frozenset(b" \t\r#)]}")
_COMPOUND = (b"if ", b"if(", b"elif ", b"elif(", b"else:", b"try:", b"except:", b"except ",
             b"except(", b"finally:", b"for ", b"while ", b"while(", b"with ", b"with(",
             b"match ", b"async ")


def lost_names(old: bytes, new: bytes) -> set[str] | None:
    """The names ``old`` binds at its top level that ``new`` does not, found without
    parsing when both are simple (only defs, classes, one-line imports and ``NAME = ...``
    at the top level, plus an ``if __name__ == "__main__":`` block, whose body is ignored):
    only the top-level lines that differ are read. None: let :func:`bound_names` decide."""
    o, n = _top_lines(old), _top_lines(new)
    if o is None or n is None:
        return None
    gone = names_of(o - n)
    if gone is None or not gone:
        return gone
    # Only the lines of ``new`` that could bind one of them are read.
    starts = (b"import ", b"from ", *(p + g.encode() for g in gone
                                       for p in (b"", b"def ", b"class ", b"async def ")))
    kept = names_of({x for x in n if x.startswith(starts)})
    return None if kept is None else gone - kept


def _top_lines(data: bytes) -> set[bytes] | None:
    text = _STRINGS.sub(b'""', data) if b"'''" in data or b'"""' in data else data
    lines = {x for x in text.split(b"\n") if x and x[0] not in _NOT_TOP}
    if any(x.startswith(_COMPOUND) and not x.startswith(b"if __name__") for x in lines):
        return None
    return lines


def names_of(lines: set[bytes]) -> set[str] | None:
    """The names top-level ``lines`` bind; None if one is not a simple statement."""
    names: set[str] = set()
    for line in lines:
        if line[0] in b"@\"'" or line.startswith(b"if __name__"):
            continue  # a decorator, a docstring (its text is gone), the main block
        m = _QUICK_LINE.match(line)
        if m is None or line.rstrip().endswith(b"\\"):
            return None
        name = m.group(1) or m.group(2) or m.group(3)
        if name is not None:
            if m.group(3) is not None and (b"," in line[:m.end()]
                                           or _CHAINED.match(line, m.end())):
                return None  # a, b = ..., a = b = 1: the parser says
            names.add(name.decode())
            continue
        if m.group(4) is None:
            continue  # a call or an attribute assignment: binds nothing
        im = _IMPORT.match(line)
        if im is None or b"(" in line:
            return None
        what = im.group(1) or im.group(2)
        if what.strip() == b"*":
            names.add("*")
            continue
        if not _SIMPLE_NAMES.fullmatch(what.rstrip()):
            return None
        for part in what.split(b"#")[0].split(b","):
            words = part.split()
            if not words:
                return None
            bound = words[-1] if len(words) == 3 else words[0]
            names.add((bound if im.group(2) or len(words) == 3 else
                       bound.split(b".")[0]).decode())
    return None if "__getattr__" in names else names
