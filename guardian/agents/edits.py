"""What a write tool would leave on disk, worked out before it runs, so it can be validated.

Each function fails (:class:`EditFailed`) where the tool itself would, with the tool's own
words: an ``old_string`` absent from the file, or found more than once without
``replace_all``; a missing file; an unknown notebook cell. The hook then lets the call through
and the tool fails by itself, writing nothing. The content is only validated: what lands is
recorded from the disk afterwards (so a difference in how the tool writes a notebook's JSON,
say, never reaches the store).
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False  # keeps `typing` off the no-daemon hook's start-up path
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    #: The current bytes of a path (None: no such file).
    Reader = Callable[[str], bytes | None]

#: Largest file read to work out an edit (a bigger one is not validated before the write).
MAX_READ = 64 * 1024 * 1024


class EditFailed(Exception):
    """The tool would refuse this call (the message is what it would say)."""


class TooBig(Exception):
    """A file too large to work out an edit of: the write is not validated first."""


def read_file(path: str) -> bytes | None:
    """A regular file's bytes, None if there is none; never blocks (a FIFO is refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise EditFailed(f"cannot read {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise EditFailed(f"{path} is not a regular file")
        if st.st_size > MAX_READ:
            raise TooBig(f"{path}: {st.st_size:,} bytes, over the {MAX_READ:,}-byte limit of "
                         "what a hook reads")
        return f.read(MAX_READ + 1)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _str(d: dict[str, Any], key: str, default: str | None = None) -> str:
    v = d.get(key, default)
    if not isinstance(v, str):
        raise EditFailed(f"{key} must be a string" if key in d else f"{key} is missing")
    return v


def replace(text: str, old: str, new: str, *, replace_all: bool = False,
            expected: int | None = None) -> str:
    """One Edit: ``old`` replaced by ``new`` (Claude Code's rules; Gemini's with ``expected``)."""
    if old == new:
        raise EditFailed("No changes to make: old_string and new_string are exactly the same.")
    count = text.count(old)
    if count == 0:
        raise EditFailed(f"String to replace not found in file.\nString: {old}")
    if expected is not None:
        if count != expected:
            raise EditFailed(f"Failed to edit, expected {expected} occurrence(s) but found "
                             f"{count}.")
        return text.replace(old, new)
    if count > 1 and not replace_all:
        raise EditFailed(f"Found {count} matches of the string to replace, but replace_all is "
                         "false. To replace all occurrences, set replace_all to true. To "
                         "replace only one occurrence, please provide more context to uniquely "
                         f"identify the instance.\nString: {old}")
    return text.replace(old, new) if replace_all else text.replace(old, new, 1)


def _edit_one(current: bytes | None, e: dict[str, Any], *, gemini: bool = False) -> bytes:
    old, new = _str(e, "old_string"), _str(e, "new_string")
    if current is None:
        if old == "":
            return _encode(new)  # an Edit with an empty old_string creates the file
        raise EditFailed("File does not exist.")
    if old == "":
        if current.strip() == b"":
            return _encode(new)
        raise EditFailed("Cannot create new file - file already exists.")
    expected = None
    if gemini:
        exp = e.get("expected_replacements", 1)
        expected = exp if isinstance(exp, int) and not isinstance(exp, bool) and exp > 0 else 1
    return _encode(replace(_decode(current), old, new, replace_all=e.get("replace_all") is True,
                           expected=expected))


def write(tool_input: dict[str, Any]) -> bytes:
    return _encode(_str(tool_input, "content"))


def edit(tool_input: dict[str, Any], current: bytes | None, *, gemini: bool = False) -> bytes:
    return _edit_one(current, tool_input, gemini=gemini)


def multiedit(tool_input: dict[str, Any], current: bytes | None) -> bytes:
    """MultiEdit (legacy, still sent by older Claude Code): each edit on the last's result,
    all or nothing."""
    edits = tool_input.get("edits")
    if not isinstance(edits, list) or not edits:
        raise EditFailed("edits must be a non-empty list")
    data = current
    for i, e in enumerate(edits):
        if not isinstance(e, dict):
            raise EditFailed(f"edits[{i}] must be an object")
        data = _edit_one(data, e)
    assert data is not None
    return data


#: A cell id Claude Code makes for a cell that has none: its index (``cell-3``).
_CELL_INDEX = r"cell-(\d+)\Z"


def notebook(tool_input: dict[str, Any], current: bytes | None) -> bytes:
    """NotebookEdit: replace, insert (after ``cell_id``, or first) or delete one cell."""
    import json  # only a notebook's edit needs json and re (the hook's start-up)
    import re

    if current is None:
        raise EditFailed("Notebook file does not exist.")
    try:
        nb = json.loads(current)
    except ValueError:
        raise EditFailed("Notebook is not valid JSON.") from None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise EditFailed("Notebook has no cells array.")
    mode = tool_input.get("edit_mode") or "replace"
    if mode not in ("replace", "insert", "delete"):
        raise EditFailed("Edit mode must be replace, insert, or delete.")
    cell_type = tool_input.get("cell_type")
    cell_id = tool_input.get("cell_id")
    index = 0
    if cell_id is not None:
        found = next((i for i, c in enumerate(cells)
                      if isinstance(c, dict) and c.get("id") == cell_id), None)
        if found is None and isinstance(cell_id, str) and (m := re.match(_CELL_INDEX, cell_id)):
            found = int(m.group(1))
            if found >= len(cells):
                raise EditFailed(f"Cell with index {found} does not exist in notebook.")
        if found is None:
            raise EditFailed(f'Cell with ID "{cell_id}" not found in notebook.')
        index = found + 1 if mode == "insert" else found
    elif mode != "insert":
        raise EditFailed("Cell ID must be specified when not inserting a new cell.")
    if mode == "delete":
        del cells[index]
    else:
        source = _str(tool_input, "new_source")
        if mode == "insert":
            if cell_type not in ("code", "markdown"):
                raise EditFailed("Cell type is required when using edit_mode=insert.")
            cell: dict[str, Any] = {"cell_type": cell_type, "metadata": {}, "source": source}
            if cell_type == "code":
                cell.update(execution_count=None, outputs=[])
            cells.insert(index, cell)
        else:
            if index >= len(cells) or not isinstance(cells[index], dict):
                raise EditFailed(f"Cell with index {index} does not exist in notebook.")
            target = cells[index]
            target["source"] = source
            if cell_type in ("code", "markdown"):
                target["cell_type"] = cell_type
            if target.get("cell_type") == "code":
                target["execution_count"] = None
                target["outputs"] = []
    return _encode(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------ Codex's apply_patch
def patch(text: str, cwd: str, read: Reader) -> list[tuple[str, bytes | None]]:
    """The files Codex's ``apply_patch`` envelope would leave (None: deleted), in order.

    ``*** Begin Patch`` … ``*** End Patch`` holding ``*** Add File: P`` (lines of ``+``),
    ``*** Delete File: P`` and ``*** Update File: P`` (optionally ``*** Move to: Q``) with
    ``@@`` chunks of `` ``/``-``/``+`` lines, each found after the last in the file.
    """
    lines = text.splitlines()
    if not lines or lines[0].strip() != "*** Begin Patch":
        raise EditFailed("The first line of the patch must be '*** Begin Patch'")
    out: list[tuple[str, bytes | None]] = []
    i = 1

    def where(p: str) -> str:
        return os.path.normpath(os.path.join(cwd, p.strip()))

    while i < len(lines):
        line = lines[i]
        if line.strip() == "*** End Patch":
            return out
        if line.startswith("*** Add File: "):
            path, body = where(line[14:]), []
            i += 1
            while i < len(lines) and not lines[i].startswith("*** "):
                if not lines[i].startswith("+"):
                    raise EditFailed(f"Invalid Add File line: {lines[i]!r}")
                body.append(lines[i][1:])
                i += 1
            out.append((path, _encode("".join(b + "\n" for b in body))))
            continue
        if line.startswith("*** Delete File: "):
            path = where(line[17:])
            if read(path) is None:
                raise EditFailed(f"Failed to delete file {path}: no such file")
            out.append((path, None))
            i += 1
            continue
        if line.startswith("*** Update File: "):
            path = where(line[17:])
            current = read(path)
            if current is None:
                raise EditFailed(f"Failed to read file to update {path}")
            i += 1
            dest = path
            if i < len(lines) and lines[i].startswith("*** Move to: "):
                dest = where(lines[i][13:])
                i += 1
            file_lines = _decode(current).split("\n")
            if file_lines and file_lines[-1] == "":
                file_lines.pop()
            pos = 0
            while i < len(lines) and not lines[i].startswith("*** "):
                if lines[i].startswith("@@"):
                    i += 1
                old: list[str] = []
                new: list[str] = []
                while i < len(lines) and not lines[i].startswith(("@@", "*** ")):
                    tag, body_line = lines[i][:1], lines[i][1:]
                    if tag in (" ", ""):
                        old.append(body_line)
                        new.append(body_line)
                    elif tag == "-":
                        old.append(body_line)
                    elif tag == "+":
                        new.append(body_line)
                    else:
                        raise EditFailed(f"Invalid patch line: {lines[i]!r}")
                    i += 1
                at = _find(file_lines, old, pos)
                if at is None:
                    raise EditFailed(f"Failed to find expected lines in {path}:\n"
                                     + "\n".join(old))
                file_lines[at:at + len(old)] = new
                pos = at + len(new)
            result = _encode("\n".join(file_lines) + "\n")
            if dest != path:
                out.append((path, None))
            out.append((dest, result))
            continue
        if not line.strip():
            i += 1
            continue
        raise EditFailed(f"Invalid patch line: {line!r}")
    raise EditFailed("The last line of the patch must be '*** End Patch'")


def _find(lines: list[str], seq: list[str], start: int) -> int | None:
    if not seq:
        return len(lines)
    for strip in (False, True):  # exact, then ignoring trailing whitespace (as Codex does)
        want = [s.rstrip() if strip else s for s in seq]
        for at in range(start, len(lines) - len(seq) + 1):
            if all((lines[at + k].rstrip() if strip else lines[at + k]) == want[k]
                   for k in range(len(seq))):
                return at
    return None


def would_write(tool: str, tool_input: dict[str, Any], path: str | None, cwd: str,
                read: Reader, *, gemini: bool = False) -> list[tuple[str, bytes | None]]:
    """(path, content or None for a removal) of every file the call would leave."""
    if tool == "patch":
        cmd = tool_input.get("command", tool_input.get("input"))
        if isinstance(cmd, list):  # ["apply_patch", "*** Begin Patch…"]
            cmd = next((c for c in cmd if isinstance(c, str) and "*** Begin Patch" in c), None)
        if not isinstance(cmd, str):
            raise EditFailed("apply_patch: no patch text")
        start = cmd.find("*** Begin Patch")
        if start < 0:
            raise EditFailed("The first line of the patch must be '*** Begin Patch'")
        return patch(cmd[start:], cwd, read)
    if path is None:
        raise EditFailed("file_path must be an absolute path" if tool != "notebook"
                         else "notebook_path must be an absolute path")
    if tool == "write":
        return [(path, write(tool_input))]
    current = read(path)
    if tool == "edit":
        return [(path, edit(tool_input, current, gemini=gemini))]
    if tool == "multiedit":
        return [(path, multiedit(tool_input, current))]
    if tool == "notebook":
        return [(path, notebook(tool_input, current))]
    raise EditFailed(f"not a write tool: {tool}")


def patch_paths(text: str, cwd: str) -> list[str]:
    """Every path an ``apply_patch`` envelope names (added, updated, deleted, moved to)."""
    out: list[str] = []
    for line in text.splitlines():
        for head in ("*** Add File: ", "*** Update File: ", "*** Delete File: ", "*** Move to: "):
            if line.startswith(head) and line[len(head):].strip():
                path = os.path.normpath(os.path.join(cwd, line[len(head):].strip()))
                if path not in out:
                    out.append(path)
    return out
