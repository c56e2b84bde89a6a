"""Batches: ``apply`` (a manifest, all or nothing) and ``bench`` (the seed's scenarios).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from guardian.cli.common import explicit_store, print_json, session_of
from guardian.errors import UsageError
from guardian.exitcodes import ExitCode

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~5 ms per call
if TYPE_CHECKING:
    import argparse




def cmd_apply(args: argparse.Namespace) -> int:
    from guardian.api import apply
    from guardian.batch import manifest as mf
    from guardian.errors import BatchError
    from guardian.paths import absolute

    cap = mf.MAX_MANIFEST_BYTES + 1  # /dev/zero must not fill the memory
    template_dir = None
    if args.manifest == "-":
        raw, source = sys.stdin.buffer.read(cap), "<stdin>"
    else:
        try:  # a FIFO or <(command) is read like stdin: the user named it
            with open(args.manifest, "rb") as f:
                raw, source = f.read(cap), args.manifest
        except OSError as e:
            raise UsageError(f"{args.manifest}: {e.strerror or e}") from None
        template_dir = os.path.dirname(os.path.abspath(args.manifest))
    m = mf.load(raw, source)
    base = absolute(args.root)
    if not base.is_dir():
        raise UsageError(f"{args.root}: not a directory")
    session = session_of(args)
    if session is not None:
        mf.check_session(session, "--session")
    try:
        out = apply(m, base, store=explicit_store(args), dry_run=args.dry_run,
                    session=session, template_dir=template_dir,
                    one_shot=getattr(args, "one_shot", False))
    except BatchError as e:
        if args.json:
            print_json({"ok": False, "error": e.to_json()})
        else:
            what = ("error" if e.category == "recovery" or e.exit_code == ExitCode.USAGE
                    else "rolled back" if e.rolled_back else "refused")
            sys.stderr.write(f"guardian apply: {what}: {e}\n")
        return int(e.exit_code)
    for w in [] if args.json else out.get("warnings", []):
        sys.stderr.write(f"guardian apply: warning: {w['message']}\n")
    if args.json:
        print_json(out)
    elif out["dry_run"]:
        sys.stdout.write(out["diff"])
    else:
        counts: dict[str, int] = {}
        for f in out["files"]:
            counts[f["action"]] = counts.get(f["action"], 0) + 1
        done = ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))
        print(f"batch {out['batch']}: {done} in {out['duration_ms']:.1f} ms"
              if out["batch"] else f"nothing to change ({done})")
    return ExitCode.OK


def cmd_bench(args: argparse.Namespace) -> int:
    from guardian import benchmark

    if min(args.files, args.size, args.repeats) < 1 or args.large < 0:
        raise UsageError("--files, --size and --repeats must be at least 1")
    progress = None if args.json or not sys.stderr.isatty() else (
        lambda m: print(f"… {m}", file=sys.stderr, flush=True))
    result = benchmark.run(files=args.files, size=args.size, repeats=args.repeats,
                           large=args.large, workdir=Path(args.dir) if args.dir else None,
                           progress=progress)
    if args.json:
        print_json(result)
    else:
        print(benchmark.render(result))
    return ExitCode.OK if result["passed"] else ExitCode.FAILURE
