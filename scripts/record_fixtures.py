#!/usr/bin/env python3
"""Record the correlation fixtures from a real run: the netns lab, live core probes.

tests/fixtures/lab_mesh_vip.swt + .json (the answers the lab's backends gave, per client)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tracer import lab

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "lab_mesh_vip.swt"


def main() -> None:
    was_up = lab.status() is not None
    lab.up()
    try:
        OUT.unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-m", "tracer", "trace", "--json", "--port",
                                 "8080", "--addr", "10.0.0.9", "--count", "10", "-w", str(OUT),
                                 "--timeout", "60"], stdout=subprocess.PIPE, text=True)
        time.sleep(4)  # attach to every netns
        answers = lab.traffic("mesh", 6, interval_s=0.05) + lab.traffic("vip", 4, interval_s=0.05)
        out, _ = proc.communicate(timeout=60)
        live = [json.loads(line) for line in out.splitlines()]
        OUT.with_suffix(".json").write_text(json.dumps({
            "answers": [a.to_json() for a in answers],
            "live": live,
        }, indent=1) + "\n")
        OUT.chmod(0o644)  # a test fixture, read by tests that run as nobody
        print(f"{OUT}: {len(live)} requests traced live, {len(answers)} answers")
    finally:
        if not was_up:
            lab.down()


if __name__ == "__main__":
    main()
