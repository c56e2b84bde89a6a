"""INI / CFG: the file must load with ``configparser`` as the tools reading ``setup.cfg``,
``tox.ini``, ``mypy.ini``, ``.flake8`` or ``pytest.ini`` load it.

Strict mode is on (a duplicate section or option is an error: configparser keeps only one of
them), interpolation is off (``%`` is ordinary text, as in most of those files), comments
start with ``#`` or ``;`` at the start of a line (configparser's defaults; inline comments
are off, so ``;`` and ``#`` inside values stay values). Keys are compared case-insensitively,
as configparser does.
"""

from __future__ import annotations

import configparser
from collections.abc import Iterable, Mapping
from typing import Any

from guardian.validation.validators.base import (
    BaseValidator,
    Problem,
    decode_utf8,
    one_line,
    opt_bool,
)


class IniValidator(BaseValidator):
    """Options: ``allow_no_value`` (default false): accept keys without a value
    (``my.cnf`` style ``skip-external-locking``)."""

    name = "ini"

    def check(self, data: bytes, path: str, options: Mapping[str, Any]) -> Iterable[Problem]:
        allow_no_value = opt_bool(options, "allow_no_value", False)
        text, problem = decode_utf8(data)
        if text is None:
            return [problem] if problem else []
        text = text.removeprefix("\ufeff")  # configparser's own file reading accepts it too
        parser = configparser.ConfigParser(strict=True, interpolation=None,
                                           allow_no_value=allow_no_value)
        try:
            parser.read_string(text, source=path)
        except configparser.DuplicateSectionError as e:
            first = _first_section(parser, text, e.section, e.lineno)
            where = f" (first at line {first})" if first else ""
            return [Problem(f"duplicate section [{e.section}]{where}", e.lineno)]
        except configparser.DuplicateOptionError as e:
            first = _first_option(parser, text, e.section, e.option, e.lineno)
            where = f" (first at line {first})" if first else ""
            return [Problem(f"duplicate option {e.option!r} in section [{e.section}]{where}",
                            e.lineno)]
        except configparser.MissingSectionHeaderError as e:
            return [Problem(f"{e.line.strip()!r} comes before any [section] header", e.lineno)]
        except configparser.ParsingError as e:
            lines = text.splitlines()
            return [Problem(one_line(f"cannot parse {_line(lines, n)!r}: expected 'name = value'"
                                     f", 'name: value' or a [section] header"), n)
                    for n, _ in e.errors]
        except configparser.Error as e:
            return [Problem(one_line(str(e)))]
        return []


def _line(lines: list[str], lineno: int) -> str:
    return lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""


def _first_section(parser: configparser.ConfigParser, text: str, section: str,
                   before: int | None) -> int | None:
    """The line where a duplicated section first appears (configparser does not say)."""
    for n, line in enumerate(text.splitlines()[: (before or 1) - 1], 1):
        m = parser.SECTCRE.match(line.strip())
        if m and m.group("header") == section:
            return n
    return None


def _first_option(parser: configparser.ConfigParser, text: str, section: str, option: str,
                  before: int | None) -> int | None:
    """Where a duplicated option first appears in its section (None when unsure).

    Only unindented lines are considered: an indented one may be a continuation line.
    """
    current: str | None = None
    for n, line in enumerate(text.splitlines()[: (before or 1) - 1], 1):
        if not line or line[0].isspace() or line[0] in "#;":
            continue
        m = parser.SECTCRE.match(line.strip())
        if m:
            current = m.group("header")
            continue
        o = parser.OPTCRE.match(line)  # configparser's own pattern for "name = value"
        if o and current == section and parser.optionxform(o.group("option").rstrip()) == \
                option:
            return n
    return None


VALIDATOR = IniValidator()
