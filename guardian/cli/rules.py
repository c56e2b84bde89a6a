"""Rules: ``rules`` (what applies to a path, and why), ``validate``, ``trust``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from guardian.cli.common import explicit_store, print_json
from guardian.errors import UsageError
from guardian.exitcodes import ExitCode

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~5 ms per call
if TYPE_CHECKING:
    import argparse
    from typing import Any




def cmd_rules(args: argparse.Namespace) -> int:
    from guardian.locations import find_store_for
    from guardian.paths import absolute
    from guardian.rules.rulefiles import RuleSet

    target = absolute(args.path)
    root = _rules_root(args, target)
    rel = "" if target == root else str(target.relative_to(root))
    rs = RuleSet(str(root))
    probe = f"{rel}/x" if target.is_dir() and rel else ("x" if target.is_dir() else rel)
    eff = rs.effective(probe)
    if rs.errors:
        raise UsageError(next(iter(rs.errors.values())))
    ignored = why_ignored(root, rel, target.is_dir(),
                           explicit_store(args) or find_store_for(target), rs)
    out = eff.to_json()
    out["path"] = str(target)
    out["root"] = str(root)
    out["ignored"] = ignored
    if args.json:
        print_json(out)
        return ExitCode.OK
    print(f"{target}  (root {root})")
    if ignored:
        print(f"  ignored {ignored_text(ignored)}: Guardian does not record it")
    for key, item in out["settings"].items():
        print(f"  {key} = {json.dumps(item['value'])}    # {item['from']}")
    return ExitCode.OK


def _rules_root(args: argparse.Namespace, target: Path) -> Path:
    """The root whose rule files apply to ``target``: a store's root, else the current
    directory (or the target's own directory when it is elsewhere)."""
    from guardian.locations import find_store_for, read_store_roots

    store = explicit_store(args) or find_store_for(target)
    if store is not None:
        inside = [r for r in read_store_roots(store) if r == target or r in target.parents]
        if inside:
            return max(inside, key=lambda r: len(r.parts))
    cwd = Path.cwd()
    if target == cwd or cwd in target.parents:
        return cwd
    return target if target.is_dir() else target.parent


def rule_set(root: Path) -> Any:
    from guardian.rules.rulefiles import RuleSet

    return RuleSet(str(root))


def why_ignored(root: Path, rel: str, is_dir: bool, store: Path | None,
                 rs: Any) -> dict[str, Any] | None:
    """Why capture does not record ROOT/REL (the checks capture makes, with the pattern and
    the file:line behind each), or None if it does."""
    from guardian.rules.ignore import IgnoreMatcher

    extra: list[bytes] = []
    if store is not None:
        real = Path(os.path.realpath(store))
        if root in real.parents:
            extra.append(os.fsencode(real.relative_to(root)))
    matcher = IgnoreMatcher(os.fsencode(root), extra_ignored=extra,
                            rules=lambda r: bool(rs.ignored(os.fsdecode(r))))
    why: dict[str, Any] | None = matcher.explain(os.fsencode(rel), is_dir=is_dir)
    if why is not None and why["by"] == "rules":
        glob = rs.ignored_by(why["path"])
        if glob is not None:
            why["pattern"] = glob.glob.text
            why["from"] = str(glob.origin)
    return why


def ignored_text(why: dict[str, Any]) -> str:
    """``(by FILE:LINE: PATTERN)`` and the like, for one line of output."""
    by, pattern, where = why["by"], why.get("pattern"), why.get("from")
    if by == "store":
        return f"(the Guardian store is {pattern})"
    if by == "temp":
        return "(a Guardian temp file)"
    if by == "git":
        return "(inside .git/)"
    what = "ignore glob" if by == "rules" else ".gitignore pattern"
    if pattern is None:
        return f"(by a {what})"
    return f"(by {what} {pattern!r} at {where})" if where else f"(by {what} {pattern!r})"


def cmd_validate(args: argparse.Namespace) -> int:
    import stat

    from guardian.capture.scan import WalkReport, walk
    from guardian.paths import absolute
    from guardian.rules.ignore import IgnoreMatcher
    from guardian.rules.rulefiles import RuleSet
    from guardian.validation.check import check

    files: dict[Path, Path] = {}  # file -> root; a file named twice (or in two trees) once
    for arg in args.paths:
        target = absolute(arg)
        if not target.exists():
            raise UsageError(f"{arg}: no such file or directory")
        root = _rules_root(args, target)
        if target.is_dir():
            under = b"" if target == root else os.fsencode(target.relative_to(root))
            report = WalkReport()
            for r, st in walk(os.fsencode(root), under, IgnoreMatcher(os.fsencode(root)),
                              report):
                if stat.S_ISREG(st.st_mode):
                    files.setdefault(root / os.fsdecode(r), root)
        else:
            files.setdefault(target, root)
    rulesets: dict[Path, RuleSet] = {}
    reports = []
    bad = 0
    for f, root in files.items():
        rs = rulesets.setdefault(root, RuleSet(str(root)))
        rel = str(f.relative_to(root)) if f != root else f.name
        eff = rs.effective(rel)
        if rs.errors:
            raise UsageError(next(iter(rs.errors.values())))
        try:
            data = f.read_bytes()
        except OSError as e:
            raise UsageError(f"{f}: cannot read: {e.strerror or e}") from None
        verdict = check(eff, data, str(f))
        bad += verdict.valid is False
        reports.append((f, verdict))
    if args.json:
        print_json({"ok": bad == 0, "files": [{"path": str(f), **v.to_json()}
                                               for f, v in reports]})
    else:
        for f, v in reports:
            for name, p in v.problems():
                sev = "" if p.severity == "error" else f"{p.severity}: "
                where = f"{f}:{p.line}" if p.line else f"{f}"  # no line: no made-up 0:0
                where += f":{p.column}" if p.line and p.column else ""
                print(f"{where}: {sev}{p.message} [{name}]")
            for res in v.results:  # over a budget: unknown, which is not invalid (exit 0)
                if res.skipped and res.skipped.startswith("not validated: "):
                    print(f"{f}: {res.skipped} [{res.validator}]")
            for why in v.untrusted:
                print(f"{f}: skipped {why}", file=sys.stderr)
        print(f"{len(reports)} file{'s' if len(reports) != 1 else ''} checked, {bad} invalid",
              file=sys.stderr)
    return ExitCode.FAILURE if bad else ExitCode.OK


def cmd_trust(args: argparse.Namespace) -> int:
    from guardian.rules.rulefiles import load_rule_file
    from guardian.rules.trust import trust

    path = Path(args.file)
    if not args.revoke:
        if not path.is_file():
            raise UsageError(f"{args.file}: no such file")
        load_rule_file(path, "")  # refuse to trust a file that does not even parse
    # Revoking what was not trusted is not an error (exit 0: the file is not trusted, as
    # asked), but it is said, so a mistyped path is noticed. A deleted file can be revoked.
    real, digest, changed = trust(path, revoke=args.revoke)
    if args.json:
        print_json({"path": real, "sha256": digest, "trusted": not args.revoke,
                     "changed": changed})
    elif args.revoke:
        print(f"revoked trust in {real} (sha256 {(digest or '')[:16]}…)" if changed
              else f"{real} was not trusted; nothing to revoke")
    else:
        print(f"{'trusted' if changed else 'already trusted:'} {real} "
              f"(sha256 {(digest or '')[:16]}…)")
    return ExitCode.OK
