"""Before a batch writes anything: what each target holds now, what it will hold, and
whether that may be written (writable, unlocked, not protected, valid)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import struct
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardian import faults
from guardian.batch import patch, templates
from guardian.batch.io import Budget
from guardian.batch.locks import FLOCK_STRUCT, flock_request
from guardian.batch.manifest import Manifest, Operation
from guardian.batch.target import Target, signature
from guardian.errors import BatchError, OutsideRootError, PatchError, TemplateError
from guardian.exitcodes import ExitCode
from guardian.paths import SEP, show
from guardian.rules.rulefiles import Effective
from guardian.validation.check import check_many

if TYPE_CHECKING:
    from guardian.writer import Writer


def _probe_os_lock(t: Target, fd: int) -> None:
    """Refuse a target another process holds an flock or a POSIX (lockf) lock on.

    Probed on the read-only descriptor the content is read through: ``flock`` ignores the
    access mode, and ``F_GETLK`` asks without taking anything (a write lock could only be
    taken through a writable descriptor, and opening one would look like a write to inotify).
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise t.error("locked by another process", "lock") from None
    except OSError:
        pass  # a filesystem without flock: nothing can hold one
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
    if _LINUX:
        try:
            answer = fcntl.fcntl(fd, fcntl.F_GETLK, _WHOLE_FILE_WRITE_LOCK)
        except OSError:
            return
        if struct.unpack(FLOCK_STRUCT, answer)[0] != fcntl.F_UNLCK:
            raise t.error("locked by another process", "lock")
        return
    # Elsewhere struct flock is laid out differently: take (and drop) a lockf lock through a
    # writable descriptor instead.
    try:
        wfd = os.open(t.root.join(t.relpath), os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK
                      | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.lockf(wfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.lockf(wfd, fcntl.LOCK_UN)
    except BlockingIOError:
        raise t.error("locked by another process", "lock") from None
    except OSError:
        pass
    finally:
        os.close(wfd)


_LINUX = sys.platform.startswith("linux")
_WHOLE_FILE_WRITE_LOCK = flock_request(fcntl.F_WRLCK, 0, 0)


def read_target(t: Target, fds: Budget) -> None:
    """What is at the target now; a regular file's bytes, read through one descriptor that
    also probes for other processes' locks (and is kept, while ``fds`` allows)."""
    try:
        dfd, name = t.where()
    except FileNotFoundError:
        t.kind = "absent"  # a parent is missing: the write creates it
        return
    except NotADirectoryError:
        raise t.error("a parent is not a directory", "usage") from None
    except OutsideRootError as e:
        raise t.error(str(e).split(": ", 1)[-1], "permission") from None
    except OSError as e:
        raise t.error(f"cannot look at it: {e.strerror or e}", "permission") from None
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        t.kind = "absent"
        return
    except OSError as e:
        raise t.error(f"cannot look at it: {e.strerror or e}", "permission") from None
    t.current_mode, t.current_uid, t.current_gid = st.st_mode, st.st_uid, st.st_gid
    t.read_sig = signature(st)
    if stat.S_ISDIR(st.st_mode):
        t.kind = "dir"
        return
    if stat.S_ISLNK(st.st_mode):
        raise t.error("is a symlink; write to what it points to instead", "permission")
    if not stat.S_ISREG(st.st_mode):
        t.kind = "other"
        return
    t.kind = "file"
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dfd)
    except OSError as e:
        raise t.error(f"cannot read: {e.strerror or e}", "permission") from None
    try:
        st = os.fstat(fd)  # the inode actually opened: what a later change is compared with
        t.read_sig = signature(st)
        t.read_stat = st
        t.current_mode, t.current_uid, t.current_gid = st.st_mode, st.st_uid, st.st_gid
        chunks: list[bytes] = []  # to the end (an empty read): a read can come back short mid-file
        while chunk := os.read(fd, max(st.st_size + 1, 65536) if not chunks else 65536):
            chunks.append(chunk)
        t.current = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        _probe_os_lock(t, fd)
    except BaseException as e:
        os.close(fd)
        if isinstance(e, OSError):
            raise t.error(f"cannot read: {e.strerror or e}", "permission") from None
        raise
    if fds.take():
        t.oldfd = fd
    else:
        os.close(fd)


def fold(targets: list[Target], manifest: Manifest, base: Path) -> None:
    """Apply each target's operations in order, in memory."""
    template_files: dict[str, str] = {}
    for t in targets:
        t0 = time.perf_counter_ns()
        content: bytes | None = t.current if t.kind == "file" else None
        is_dir = t.kind == "dir"
        for op in t.ops:
            if op.op == "mkdir":
                if content is not None or t.kind == "other":
                    raise t.error("exists and is not a directory", "usage", op)
                is_dir, t.final_dir = True, True
                continue
            if is_dir or t.kind == "other":
                raise t.error("is a directory" if is_dir else "is not a regular file",
                              "usage", op)
            if op.op == "write":
                content = op.content
            elif op.op == "delete":
                if content is None:
                    raise t.error("does not exist", "usage", op)
                content = None
            elif op.op == "edit":
                content = _edit(t, op, content)
                t.optimisations.add("incremental")
            elif op.op == "render":
                content = _render(t, op, base, manifest.template_dirs, template_files)
            if op.mode is not None:
                t.mode = op.mode
        t.final = content
        if not any(op.mode is not None for op in t.ops):
            t.mode = stat.S_IMODE(t.current_mode) if t.kind == "file" and t.current_mode \
                else 0o666 & ~_umask()
        t.elapsed_ns += time.perf_counter_ns() - t0


def _edit(t: Target, op: Operation, content: bytes | None) -> bytes:
    if content is None:
        raise t.error("does not exist; nothing to edit", "usage", op)
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as e:
        raise t.error(f"is not UTF-8 text (byte {e.start}); edit needs text", "usage",
                      op) from None
    if op.patch is not None:
        try:
            return patch.apply(text, op.patch).encode("utf-8")
        except PatchError as e:
            raise t.error(str(e), "usage", op) from None
    assert op.old is not None and op.new is not None
    count = text.count(op.old)
    if count == 0:
        raise t.error("the text to replace is not in the file", "usage", op)
    if count > 1:
        raise t.error(f"the text to replace occurs {count} times; give more context so it "
                      "occurs once", "usage", op)
    return text.replace(op.old, op.new, 1).encode("utf-8")


def _render(t: Target, op: Operation, base: Path, dirs: tuple[str, ...],
            read: dict[str, str]) -> bytes:
    if op.template_path is not None:
        text = read.get(op.template_path)  # a template file is read once per batch
        if text is None:
            text = read[op.template_path] = read_template(t, op, base, dirs)
    else:
        assert op.template is not None
        text = op.template
    hits = templates.cache_info()[0]
    try:
        compiled = templates.compile_template(text)
        out = compiled.render(op.vars, limit=MAX_RENDERED_CHARS)
    except TemplateError as e:
        raise t.error(f"template: {e}", "usage", op) from None
    if templates.cache_info()[0] > hits:
        t.optimisations.add("template_cache")
    return out.encode("utf-8")


#: A template file larger than this is refused (it is read whole, on the store's thread).
MAX_TEMPLATE_BYTES = 16 * 1024 * 1024
#: A render whose output would be longer than this is refused before it is built.
MAX_RENDERED_CHARS = 64 * 1024 * 1024


def read_template(t: Target, op: Operation, base: Path, dirs: tuple[str, ...]) -> str:
    """The text of ``op.template_path``, read as untrusted input: the path (relative to the
    batch's base; ``..`` folded as text) must lie inside the target's root or one of
    ``dirs`` (the other roots, the manifest's directory); every directory on the way is
    opened from that directory's fd without following a symlink, the file itself with
    O_NOFOLLOW | O_NONBLOCK, and it must be a regular file of at most MAX_TEMPLATE_BYTES.
    So a FIFO, a device or a link out of the tree is refused at once, never waited on or
    read into the tree."""
    assert op.template_path is not None
    name = op.template_path

    def refuse(why: str, category: str = "usage") -> BatchError:
        return t.error(f"template_path {name}: {why}", category, op)

    full = os.path.normpath(os.path.join(os.path.realpath(base), name))
    allowed = {str(t.root.path)}
    for d in dirs:  # as given and resolved: the template's own path may use either
        allowed.update((os.path.normpath(d), os.path.realpath(d)))
    inside = [d for d in allowed if full == d or full.startswith(d.rstrip("/") + "/")]
    if not inside:
        e = refuse("outside the watched roots and the manifest's directory", "permission")
        e.exit_code = ExitCode.USAGE  # the manifest alone decides this: a usage error
        raise e
    top = max(inside, key=len)
    parts = [os.fsencode(p) for p in full[len(top.rstrip("/")) + 1:].split("/") if p]
    if not parts:
        raise refuse("is a directory")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = -1
    try:
        # The root or the manifest's directory itself is trusted (its own path may well go
        # through a symlink); nothing below it is followed.
        fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        for part in parts[:-1]:
            nfd = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise refuse(f"is {_kind(st.st_mode)}, not a regular file")
        dfd, fd = fd, -1
        try:
            fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=dfd)
        finally:
            os.close(dfd)
        st = os.fstat(fd)  # what was opened, if it was swapped since the stat
        if not stat.S_ISREG(st.st_mode):
            raise refuse(f"is {_kind(st.st_mode)}, not a regular file")
        chunks: list[bytes] = []
        size = st.st_size if st.st_size > MAX_TEMPLATE_BYTES else 0  # too big: no read
        while size <= MAX_TEMPLATE_BYTES and (chunk := os.read(fd, 1 << 20)):
            chunks.append(chunk)
            size += len(chunk)
    except FileNotFoundError:
        raise refuse("no such file") from None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise refuse("a component is a symlink or not a directory (templates are read "
                         "without following links)") from None
        raise refuse(f"cannot read: {e.strerror or e}", "permission") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if size > MAX_TEMPLATE_BYTES:
        raise refuse(f"larger than {MAX_TEMPLATE_BYTES // (1024 * 1024)} MiB (the cap on "
                     "a template file)")
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as e:
        raise refuse(f"not UTF-8 text (byte {e.start})") from None


def _kind(mode: int) -> str:
    for test, what in ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return what
    return "not a file"


def check_writable(t: Target, seen: dict[tuple[int, bytes], Any]) -> None:
    """Refuse now what the writes would fail on: an uncreatable or unwritable directory, an
    unwritable target. ``seen`` caches per directory (a batch has many files per directory).
    """
    if t.unchanged:
        return
    fs = t.rootfs
    try:
        faults.point("batch.permission")
        parent = t.relpath if t.final_dir else t.relpath.rpartition(SEP)[0]
        key = (t.root.id, parent)
        missing = seen.get(key)
        if missing is None:
            missing = seen[key] = fs.missing_dirs(parent + b"/x") if parent else []
        t.created_dirs = list(missing)
        existing = missing[0].rpartition(SEP)[0] if missing else parent
        if t.final_dir and not missing:
            return  # the directory is there already
        directory = t.root.join(existing)
        akey = (-t.root.id - 1, existing)
        if akey not in seen:
            seen[akey] = os.access(directory, os.W_OK | os.X_OK)
        if not seen[akey]:
            what = "create its directory in" if missing else "write in its directory"
            raise t.error(f"cannot {what} {show(directory)}: permission denied", "permission")
        if t.kind == "file":
            dfd, name = t.where()  # its parent's fd: no walk of the whole path per file
            if not os.access(name, os.W_OK, dir_fd=dfd):
                raise t.error("is not writable: permission denied", "permission")
    except OSError as e:
        raise t.error(f"{e.strerror or e}", "permission") from None
    except OutsideRootError as e:
        raise t.error(str(e).split(": ", 1)[-1], "permission") from None


def validate(writer: Writer, targets: list[Target]) -> None:
    """Refuse a protected target, then check every new content (on several cores where it
    pays: :func:`guardian.policy.check_many`); the first invalid one, in target order,
    refuses the batch naming its line and column."""
    policy = writer.policy
    checked: list[tuple[Target, Effective]] = []
    for t in targets:
        if t.unchanged or t.final_dir:
            continue
        eff = policy.effective(t.root.id, t.relpath)
        if eff.protected:
            origin = eff.settings["protect"][1]
            raise t.error(f"is protected by {origin}; Guardian would revert the change",
                          "validation")
        if t.final is not None:
            checked.append((t, eff))
    remote: set[int] = set()
    verdicts = check_many([(eff, t.final or b"", t.root.display(t.relpath))
                           for t, eff in checked], offloaded=remote)
    for i in remote:
        checked[i][0].optimisations.add("parallel_validation")
    for (t, _eff), verdict in zip(checked, verdicts, strict=True):
        valid = verdict.valid
        t.valid = valid  # recorded with the version: no later check needs to run again
        if valid is False:
            first = next(p for _n, p in verdict.problems() if p.severity == "error")
            raise t.error(f"invalid: {verdict.summary(t.shown)}", "validation",
                          line=first.line, column=first.column)


_UMASK: int | None = None


def _umask() -> int:
    """The process umask, read without changing it (os.umask is not thread-safe)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = 0o022
        with contextlib.suppress(OSError, ValueError):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("Umask:"):
                    _UMASK = int(line.split()[1], 8)
    return _UMASK
