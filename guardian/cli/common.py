"""What every command family shares: finding the store, JSON and size output.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from guardian.cli.quick import human_size as human_size
from guardian.errors import NotFoundError
from guardian.locations import STORE_ENV

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~5 ms per call
if TYPE_CHECKING:
    import argparse
    from typing import Any




def explicit_store(args: argparse.Namespace) -> Path | None:
    value = getattr(args, "store", None) or os.environ.get(STORE_ENV)
    return Path(os.path.abspath(value)) if value else None


def find_store(args: argparse.Namespace, path: str | None) -> Path:
    from guardian.locations import find_store_for
    from guardian.paths import absolute

    explicit = explicit_store(args)
    if explicit is not None:
        return explicit
    target = absolute(path) if path else Path.cwd()
    found = find_store_for(target)
    if found is None:
        raise NotFoundError(f"no Guardian store covers {target}; run `guardian watch` there "
                            "first, or pass --store")
    return found


def open_reader(args: argparse.Namespace, path: str | None) -> Any:
    from guardian.store.db import Store

    return Store.open(find_store(args, path), write=False)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def session_of(args: argparse.Namespace) -> str | None:
    return getattr(args, "session", None) or os.environ.get("GUARDIAN_SESSION") or None


def resolve_at(args: argparse.Namespace) -> int | None:
    from guardian.timespec import parse_time

    return parse_time(args.at) if getattr(args, "at", None) else None
