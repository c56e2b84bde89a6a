"""``guardian verify``: re-hash every stored object and name what is damaged.

Each corrupt or missing object is reported with every version that uses it, so a user knows
exactly which history was hit. SQLite's own ``quick_check`` runs first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from guardian.history import version_json
from guardian.objects import CorruptObjectError, Objects
from guardian.store import Store


@dataclass
class Damage:
    sha256: str
    reason: str
    loose: bool
    versions: list[dict[str, Any]]


@dataclass
class VerifyResult:
    objects: int = 0
    bytes: int = 0
    database_ok: bool = True
    database_message: str = "ok"
    damaged: list[Damage] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.database_ok and not self.damaged

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "objects": self.objects,
            "bytes": self.bytes,
            "database": {"ok": self.database_ok, "message": self.database_message},
            "corrupt": [
                {"sha256": d.sha256, "reason": d.reason, "loose": d.loose, "versions": d.versions}
                for d in self.damaged
            ],
        }


def verify(store: Store, progress: Callable[[int, int], None] | None = None) -> VerifyResult:
    result = VerifyResult()
    rows = store.db.execute("PRAGMA quick_check").fetchall()
    msg = "; ".join(str(r[0]) for r in rows)
    result.database_ok = msg == "ok"
    result.database_message = msg
    objects = Objects(store)
    infos = list(objects.all())
    total = len(infos)
    roots = {r.id: r for r in store.roots()}
    for i, info in enumerate(infos, 1):
        try:
            objects.check(info)
        except CorruptObjectError as e:
            users = [
                version_json(v, roots)
                for v in (store.version(int(r[0])) for r in store.db.execute(
                    "SELECT id FROM versions WHERE object_id=? ORDER BY id", (info.id,)))
                if v is not None
            ]
            result.damaged.append(Damage(info.hash.hex(), str(e), info.loose, users))
        result.objects += 1
        result.bytes += info.size
        if progress:
            progress(i, total)
    return result
