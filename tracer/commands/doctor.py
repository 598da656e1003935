"""`swarmtrace doctor`: what this kernel and host support and which backend `auto` picks."""

from __future__ import annotations

import argparse
import json

from tracer.doctor import Report, Support, diagnose

MARK = {Support.YES: "yes", Support.NO: "no", Support.UNKNOWN: "?"}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "doctor", help="what this kernel and host support, and which probe backend auto picks"
    )
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.set_defaults(func=run)


def render(report: Report) -> str:
    width = max(len(c.label) for c in report.capabilities)
    lines = [f"kernel {report.kernel}"]
    lines += [
        f"  {c.label:<{width}}  {MARK[c.support]:<3}  {c.detail}" for c in report.capabilities
    ]
    lines.append(f"backend auto -> {report.backend.backend}: {report.backend.reason}")
    fixes = [c for c in report.capabilities if c.fix]
    if fixes:
        lines.append("to get the rest:")
        lines += [f"  {c.label}: {c.fix}" for c in fixes]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    report = diagnose()
    print(json.dumps(report.to_json()) if args.json else render(report))
    return 0
