"""What Guardian does not record: ``.git/``, the store, its own temp files, ``.gitignore``d paths.

``.gitignore`` files are read per directory, like git: deeper files win, a ``!pattern`` re-includes,
and nothing inside an ignored directory can be re-included. ``.git/info/exclude`` applies at
the root. Matchers are cached per directory and dropped when a ``.gitignore`` changes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Container, Iterator
from typing import Any

from guardian.paths import SEP, TEMP_PREFIX

GITIGNORE = b".gitignore"


def _uncached_chain(dirrel: bytes, cache: Container[bytes], *,
                    stop_at_root: bool) -> list[bytes]:
    """``dirrel`` and its parents up to the first cached one (excluded), innermost first.

    With ``stop_at_root`` the root (``b""``) is never part of the chain (as for
    :meth:`IgnoreMatcher.dir_ignored`, where the root is not a candidate), else it is its end.
    """
    chain = [dirrel]
    d = dirrel
    while d:
        d = d.rpartition(SEP)[0]
        if d in cache or (stop_at_root and not d):
            break
        chain.append(d)
    return chain


class IgnoreMatcher:
    """Answers "is this path ignored?" for one root."""

    def __init__(self, root: bytes, *, extra_ignored: list[bytes] | None = None,
                 rules: Callable[[bytes], bool] | None = None,
                 rules_in: Callable[[bytes], bool] | None = None) -> None:
        self.root = root
        #: Relative paths (dirs) ignored wholesale, e.g. a store placed inside the root.
        self.extra = [p for p in (extra_ignored or []) if p]
        #: The ``ignore`` globs of rule files (.guardian.toml), if any.
        self.rules = rules
        #: Whether any of those globs is in force in a directory (None: assume so).
        self.rules_in = rules_in
        self._plain: dict[bytes, bool] = {}
        self._specs: dict[bytes, Any] = {}
        self._dirs: dict[bytes, bool] = {}
        #: Per directory: it and its parents that hold ignore rules, innermost first.
        self._chains: dict[bytes, tuple[bytes, ...]] = {}

    def __repr__(self) -> str:
        return f"IgnoreMatcher(root={self.root!r}, extra={self.extra!r})"

    def invalidate(self) -> None:
        """Forget cached matchers (a .gitignore changed)."""
        self._specs.clear()
        self._dirs.clear()
        self._chains.clear()
        self._plain.clear()

    def ignored(self, relpath: bytes, *, is_dir: bool = False) -> bool:
        if not relpath:
            return False
        head, _, name = relpath.rpartition(SEP)
        if self._name_ignored(name, relpath):
            return True
        if head and self.dir_ignored(head):
            return True
        return self._gitignored(relpath, head, is_dir=is_dir)

    def dir_ignored(self, dirrel: bytes) -> bool:
        """Whether directory ``dirrel`` or any of its parents is ignored (cached).

        Iterative on purpose: a tree in the root may be thousands of levels deep, and a
        recursion on its depth would end in RecursionError (uncached parents are worked out
        outermost first, each from its parent's answer).
        """
        cached = self._dirs.get(dirrel)
        if cached is not None:
            return cached
        todo = _uncached_chain(dirrel, self._dirs, stop_at_root=True)
        top = todo[-1].rpartition(SEP)[0]
        result = bool(top) and self._dirs[top]
        for d in reversed(todo):
            head, _, name = d.rpartition(SEP)
            result = result or self._name_ignored(name, d) or self._gitignored(d, head,
                                                                               is_dir=True)
            self._dirs[d] = result
        return result

    def child_ignored(self, dirrel: bytes, name: bytes, *, is_dir: bool) -> bool:
        """Fast path for a walk that already knows ``dirrel`` is not ignored."""
        if name == b".git" or name.startswith(TEMP_PREFIX):
            return True
        if not self.extra and self.rules is None and not self.specs_apply(dirrel):
            return False
        relpath = dirrel + SEP + name if dirrel else name
        if self._name_ignored(name, relpath):
            return True
        return self._gitignored(relpath, dirrel, is_dir=is_dir)

    def plain(self, dirrel: bytes) -> bool:
        """Whether only ``.git`` and Guardian's temp files can be ignored among the children
        of ``dirrel`` (cached): no ignore file, no rule file's ``ignore`` glob and no store
        path in force there. A walk then tests two names instead of every rule."""
        cached = self._plain.get(dirrel)
        if cached is None:
            below = dirrel + SEP if dirrel else b""
            cached = self._plain[dirrel] = (
                not any(p.startswith(below) for p in self.extra)
                and (self.rules is None or (self.rules_in is not None
                                            and not self.rules_in(dirrel)))
                and not self.specs_apply(dirrel))
        return cached

    def specs_apply(self, dirrel: bytes) -> bool:
        """Whether any ignore file applies inside ``dirrel`` (cached; most trees have few)."""
        return bool(self._spec_chain(dirrel))

    # ----------------------------------------------------------------- internals
    def _name_ignored(self, name: bytes, relpath: bytes) -> bool:
        if name == b".git" or name.startswith(TEMP_PREFIX):
            return True
        if self.rules is not None and self.rules(relpath):
            return True
        return any(relpath == p or relpath.startswith(p + SEP) for p in self.extra)

    def _gitignored(self, relpath: bytes, parent: bytes, *, is_dir: bool) -> bool:
        # From the deepest directory with ignore rules up; the first definitive answer wins.
        for d in self._spec_chain(parent):
            sub = relpath[len(d) + 1:] if d else relpath
            text = os.fsdecode(sub) + ("/" if is_dir else "")
            res = self._specs[d].check_file(text)
            if res.include is not None:
                return bool(res.include)
        return False

    def _spec_chain(self, dirrel: bytes) -> tuple[bytes, ...]:
        """``dirrel`` and its parents that hold ignore rules, innermost first (cached).

        Each directory's chain is its parent's, plus itself if it has rules: a lookup per path
        costs the number of ignore files above it, not the depth of the tree, and nothing
        recurses on that depth.
        """
        cached = self._chains.get(dirrel)
        if cached is not None:
            return cached
        todo = _uncached_chain(dirrel, self._chains, stop_at_root=False)
        top = todo[-1]
        chain = self._chains[top.rpartition(SEP)[0]] if top else ()
        for d in reversed(todo):
            if self._spec(d) is not None:
                chain = (d, *chain)
            self._chains[d] = chain
        return chain

    def _spec(self, dirrel: bytes) -> Any:
        if dirrel in self._specs:
            return self._specs[dirrel]
        spec = _compile([line for _src, text in self._ignore_files(dirrel)
                         for line in text.splitlines()])
        self._specs[dirrel] = spec
        return spec

    def _ignore_files(self, dirrel: bytes) -> Iterator[tuple[bytes, str]]:
        """(path, text) of each ignore file of directory ``dirrel`` that can be read: its
        .gitignore, after .git/info/exclude for the root."""
        base = self.root + SEP + dirrel if dirrel else self.root
        sources = [base + SEP + GITIGNORE]
        if not dirrel:
            sources.insert(0, base + b"/.git/info/exclude")
        for src in sources:
            try:
                with open(src, "rb") as f:
                    text = f.read().decode("utf-8", "surrogateescape")
            except OSError:
                continue
            yield src, text

    # ----------------------------------------------------------------- explaining
    def explain(self, relpath: bytes, *, is_dir: bool = False) -> dict[str, Any] | None:
        """Why ``relpath`` is ignored, or None if it is not (for ``guardian rules`` and
        ``log``): ``{"by": "git" | "temp" | "store" | "rules" | "gitignore", "pattern": …,
        "from": "file:line", "path": the ignored path or directory}`` (``from`` for
        .gitignore lines). The same checks as :meth:`ignored`, from the top directory down,
        so the outermost reason is given."""
        parts = relpath.split(SEP) if relpath else []
        for n in range(1, len(parts) + 1):
            sub = SEP.join(parts[:n])
            name = parts[n - 1]
            sub_is_dir = is_dir or n < len(parts)
            why: dict[str, Any] | None = None
            if name == b".git":
                why = {"by": "git", "pattern": ".git/"}
            elif name.startswith(TEMP_PREFIX):
                why = {"by": "temp", "pattern": os.fsdecode(TEMP_PREFIX) + "*"}
            elif sub in self.extra:
                why = {"by": "store", "pattern": os.fsdecode(sub) + "/"}
            elif self.rules is not None and self.rules(sub):
                why = {"by": "rules", "pattern": None}
            else:
                why = self._explain_gitignore(sub, SEP.join(parts[:n - 1]), is_dir=sub_is_dir)
            if why is not None:
                why["path"] = os.fsdecode(sub)
                return why
        return None

    def _explain_gitignore(self, relpath: bytes, parent: bytes, *,
                           is_dir: bool) -> dict[str, Any] | None:
        # As _gitignored (the deepest directory's definitive answer wins), with each
        # pattern traced back to its file and line.
        d = parent
        while True:
            lines: list[tuple[bytes, int, str]] = []  # (file, line number, text)
            for src, text in self._ignore_files(d):
                lines += [(src, i, line) for i, line in enumerate(text.splitlines(), 1)
                          if line]  # pathspec drops empty lines: keep indices aligned
            spec = _compile([t for _s, _i, t in lines])
            if spec is not None:
                sub = relpath[len(d) + 1:] if d else relpath
                res = spec.check_file(os.fsdecode(sub) + ("/" if is_dir else ""))
                if res.include is not None:
                    if not res.include:
                        return None  # re-included by a "!pattern"
                    if res.index is None or len(spec.patterns) != len(lines):
                        return {"by": "gitignore", "pattern": None}
                    src, number, text = lines[res.index]
                    return {"by": "gitignore", "pattern": text,
                            "from": f"{os.fsdecode(src)}:{number}"}
            if not d:
                return None
            d = d.rpartition(SEP)[0]


def _compile(lines: list[str]) -> Any:
    """The pathspec of ignore-file lines; None if they hold no pattern, or a malformed one
    (which must not stop capture: that file is not used)."""
    if not any(line.strip() and not line.startswith("#") for line in lines):
        return None
    import pathspec

    try:
        return pathspec.GitIgnoreSpec.from_lines(lines)
    except Exception:
        return None
