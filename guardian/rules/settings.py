"""Settings that shape capture and retention, read from the shipped ``rules/default.toml``.

Only the catch-all rule (``paths = ["**"]``) is read here; per-directory ``.guardian.toml`` files
and the full rule language live in the rules engine.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from guardian.errors import UsageError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
          "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4,
          "tb": 1000**4, "tib": 1024**4, "ki": 1024, "mi": 1024**2, "gi": 1024**3}


@dataclass(frozen=True)
class Settings:
    settle_ms: int = 60
    settle_cap_ms: int = 1000
    max_file_size: int = 50 * 1024 * 1024
    keep_versions: int = 100
    keep_days: float = 30.0


def parse_size(value: object, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m and m.group(2).lower() in _UNITS:
            return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    raise UsageError(f"{where}: expected a size such as 50MiB, got {value!r}")


def presets_dir() -> Path:
    """The shipped presets: inside the installed package, or ``rules/`` of a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "_rules", here.parent.parent / "rules"):
        if (candidate / "default.toml").is_file():
            return candidate
    raise UsageError(f"Guardian's rule presets are missing (looked in {here / '_rules'})")


def load_defaults(path: Path | None = None) -> Settings:
    path = path or presets_dir() / "default.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: {e}") from None
    settings = Settings()
    known = {f.name for f in fields(Settings)}
    for i, rule in enumerate(data.get("rule", [])):
        if rule.get("paths") != ["**"]:
            continue
        changes: dict[str, Any] = {}
        for key, value in rule.items():
            where = f"{path}: rule[{i}].{key}"
            if key not in known:
                continue
            if key == "max_file_size":
                changes[key] = parse_size(value, where)
            elif key == "keep_days":
                if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                    raise UsageError(f"{where}: expected a number of days, got {value!r}")
                changes[key] = float(value)
            else:
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise UsageError(f"{where}: expected a whole number, got {value!r}")
                changes[key] = value
        settings = replace(settings, **changes)
    return settings
