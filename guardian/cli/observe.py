"""Observability: ``alerts``, ``metrics``, ``health``, ``report``, ``suggest``
(their work is in :mod:`guardian.observe.commands`).
"""

from __future__ import annotations

from guardian.cli.common import find_store

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~5 ms per call
if TYPE_CHECKING:
    import argparse
    from typing import Any




def metrics_summary(store: Any) -> Any:
    from guardian.observe.metrics import summary

    try:
        return summary(store)
    except Exception:  # a store this release cannot summarise still has a status
        return None


def cmd_alerts(args: argparse.Namespace) -> int:
    from guardian.observe.commands import alerts

    return alerts(args, find_store(args, None))


def cmd_metrics(args: argparse.Namespace) -> int:
    from guardian.observe.commands import metrics

    return metrics(args, find_store(args, None))


def cmd_health(args: argparse.Namespace) -> int:
    from guardian.observe.commands import health

    return health(args, find_store(args, None))


def cmd_report(args: argparse.Namespace) -> int:
    from guardian.observe.commands import report

    return report(args, find_store(args, None))


def cmd_suggest(args: argparse.Namespace) -> int:
    from guardian.observe.commands import suggest

    return suggest(args, find_store(args, None))
