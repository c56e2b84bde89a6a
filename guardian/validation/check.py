"""Verdicts: what the validators a path's rules name say about one content of it.

Capture (through the daemon), ``guardian validate``, batch writes and agent hooks all ask
here. A command validator runs only when its rule file is trusted (pinned hash); otherwise
the check says it was skipped, so the caller can alert. The costly checks are spread over
worker processes (:mod:`guardian.validation.pool`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from guardian.rules.rulefiles import Effective, ValidatorSpec
from guardian.rules.trust import is_trusted
from guardian.validation import validators
from guardian.validation.validators import Problem, Result


@dataclass(frozen=True)
class Check:
    """The validators' verdict on one content of one path."""

    results: tuple[Result, ...] = ()
    #: Command validators that did not run because their rule file is not trusted.
    untrusted: tuple[str, ...] = ()

    @property
    def valid(self) -> bool | None:
        """False if any validator found an error; None if nothing actually ran."""
        ran = [r for r in self.results if r.skipped is None]
        if not ran:
            return None
        return all(r.ok for r in ran)

    def not_validated(self) -> list[str]:
        """Why each validator that did not run did not, e.g. "python: not validated: too
        large (13.0 MiB > 4.0 MiB limit)"."""
        return [f"{r.validator}: {r.skipped}" for r in self.results if r.skipped is not None]

    def problems(self) -> list[tuple[str, Problem]]:
        return [(r.validator, p) for r in self.results for p in r.problems]

    def summary(self, path: str, limit: int = 3) -> str:
        """``path:line:col: message`` of the first problems, for alerts and errors (a
        problem with no line or column says ``path:line:`` or ``path:``, never ``:0``)."""
        lines = [f"{path}{f':{p.line}' if p.line else ''}"
                 f"{f':{p.column}' if p.line and p.column else ''}: {p.message}"
                 for _v, p in self.problems() if p.severity == "error"]
        more = f" (+{len(lines) - limit} more)" if len(lines) > limit else ""
        return "; ".join(lines[:limit]) + more

    def to_json(self) -> dict[str, Any]:
        return {"valid": self.valid, "results": [r.to_json() for r in self.results],
                "untrusted": list(self.untrusted)}


def expand(specs: Iterable[ValidatorSpec], path: str) -> list[ValidatorSpec]:
    """``auto`` becomes the validators of the path's format; duplicates are dropped."""
    out: list[ValidatorSpec] = []
    seen: set[tuple[str, str]] = set()
    for spec in specs:
        names = validators.for_path(path) if spec.name == "auto" else [spec.name]
        for name in names:
            s = spec if spec.name != "auto" else ValidatorSpec(name)
            key = (s.name, repr(sorted(s.options.items())))
            if key not in seen:
                seen.add(key)
                out.append(s)
    return out


def check(eff: Effective, data: bytes, path: str, *, timeout: float = 10.0) -> Check:
    """Run the validators the rules give ``path`` on ``data`` (its content)."""
    return check_many([(eff, data, path)], timeout=timeout)[0]


def check_many(items: list[tuple[Effective, bytes, str]], *, timeout: float = 10.0,
               offloaded: set[int] | None = None) -> list[Check]:
    """:func:`check` of many contents at once, each check within its budget (size, time,
    memory: :func:`guardian.validators.budget`): a costly built-in check runs in a worker
    process, never here, and cheap ones are spread over the machine's cores when there are
    enough (:mod:`guardian.validatepool`; the indices of the items a worker process checked
    are added to ``offloaded``). A check over its budget is "not validated" (valid None)."""
    from guardian.validation import pool as validatepool

    verdicts: list[Check | list[Result | str | None]] = []  # per item; str: untrusted
    jobs: list[validatepool.Job] = []
    where: list[tuple[int, int]] = []  # per job: (item, slot)
    for n, (eff, data, path) in enumerate(items):
        steps, fixed = plan(eff, path)
        if fixed is not None:
            verdicts.append(fixed)
            continue
        slots: list[Result | str | None] = []
        for spec, opts, skipped in steps:
            if skipped is not None:
                slots.append(skipped)
            elif spec.name == "command" and not (spec.source and spec.source_digest
                                                 and is_trusted(spec.source,
                                                                spec.source_digest)):
                slots.append(f"{spec.describe()} (from {spec.source}; run "
                             f"`guardian trust {spec.source}` to allow it)")
            else:
                where.append((n, len(slots)))
                jobs.append((spec.name, data, path, opts))
                slots.append(None)
        verdicts.append(slots)
    remote: set[int] = set()
    for (n, slot), result in zip(where, validatepool.run_many(jobs, timeout=timeout,
                                                              offloaded=remote), strict=True):
        item = verdicts[n]
        assert isinstance(item, list)
        item[slot] = result
    if offloaded is not None:
        offloaded.update(where[j][0] for j in remote)
    return [v if isinstance(v, Check) else
            Check(tuple(r for r in v if isinstance(r, Result)),
                  tuple(r for r in v if isinstance(r, str))) for v in verdicts]


#: Each validator that runs on a path, its merged options, and its verdict when the path
#: alone decides it (see ``Validator.skip_for_path``).
Steps = tuple[tuple[ValidatorSpec, Mapping[str, Any], Result | None], ...]
Plan = tuple[Steps, Check | None]
#: (id of the rules' validators setting, id of their options setting, extension, validators'
#: generation) -> (those two settings, the plan). The settings are kept so their ids cannot
#: be reused while cached.
_plans: dict[tuple[int, int, str, int], tuple[object, object, Plan]] = {}


def plan(eff: Effective, path: str) -> Plan:
    """Which validators run on ``path``, each with its merged options, and the whole verdict
    when no content can change it (every validator skips such paths): worked out once per
    rule outcome and extension (a batch or a scan checks thousands of files of a few kinds).
    Trust is not part of it: it is asked each time, so a ``guardian trust`` counts at once."""
    specs, options = eff.settings.get("validators"), eff.settings.get("options")
    ext = os.path.splitext(path)[1].lower()
    key = (id(specs), id(options), ext, validators.generation)
    hit = _plans.get(key)
    if hit is not None and hit[0] is specs and hit[1] is options:
        return hit[2]
    by_name: Mapping[str, Any] = eff.get("options", {}) or {}
    steps = []
    for spec in expand(eff.validators, path):
        opts = MappingProxyType({**by_name.get(spec.name, {}), **spec.options})
        steps.append((spec, opts, _skipped_by_path(spec.name, path, opts)))
    fixed = Check(tuple(r for _s, _o, r in steps if r is not None)) \
        if steps and all(r is not None for _s, _o, r in steps) else None
    out: Plan = (tuple(steps), fixed)
    if len(_plans) >= 1024:
        _plans.clear()
    _plans[key] = (specs, options, out)
    return out


def _skipped_by_path(name: str, path: str, options: Mapping[str, Any]) -> Result | None:
    try:
        validator = validators.get(name)
    except KeyError:
        return None  # validators.run reports it
    ask = getattr(validator, "skip_for_path", None)
    if ask is None:
        return None
    try:
        reason = ask(path, options)
    except Exception:  # a validator never breaks its caller: let run() report it
        return None
    return None if reason is None else Result(name, skipped=str(reason))
