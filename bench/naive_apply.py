"""The seed's naive safe loop (``DataIntegrityGuardian.guarantee_safe_write``) as a whole
process, the baseline of ``batch.apply``: ``python naive_apply.py MANIFEST ROOT BACKUPS``.

Stdlib only, one file: what a user would write from the seed's spec. Per operation: the old
content's checksum, a backup directory (``content`` and ``metadata.json``: path, size, mode,
SHA-256, time), the write and its fsync, the read-back compare, the accessibility check,
and the restore from the backup on any failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path


def safe_write(path: Path, content: str, backup: Path) -> None:
    had = path.exists()
    if had:
        old = path.read_bytes()
        backup.mkdir()
        (backup / "content").write_bytes(old)
        st = path.stat()
        (backup / "metadata.json").write_text(json.dumps({
            "path": str(path), "size": st.st_size, "mode": st.st_mode,
            "sha256": hashlib.sha256(old).hexdigest(), "time": time.time()}))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        if path.read_text(encoding="utf-8") != content:
            raise OSError(f"{path}: write integrity verification failed")
        if not path.exists():
            raise OSError(f"{path}: does not exist after write")
        text = path.read_text(encoding="utf-8")
        if path.stat().st_size == 0 and text:
            raise OSError(f"{path}: appears empty but content was written")
    except BaseException:
        if had:
            path.write_bytes((backup / "content").read_bytes())
        raise


def main(argv: list[str]) -> int:
    manifest, root, backups = Path(argv[1]), Path(argv[2]), Path(argv[3])
    ops = json.loads(manifest.read_bytes())["operations"]
    backups.mkdir(parents=True, exist_ok=True)
    for i, op in enumerate(ops):
        safe_write(root / op["path"], op["content"], backups / f"{i}-{time.time_ns()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
