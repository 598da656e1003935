#!/usr/bin/env python3
"""Record correlation fixtures on Debian's stock kernel: a real 2-node swarm in the VM lab,
Docker's own routing mesh and VIP through real IPVS, traced by both backends at once.

tests/fixtures/swarm_vm_bcc.swt, swarm_vm_core.swt: each backend's events (names inside);
tests/fixtures/swarm_vm.json: what scripts/check_ipvs_backends.py saw (answers, IPVS's own
connection table, the requests traced live). Takes about 5 minutes under emulation."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tracer.vm import Guest, VmConfig

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def main() -> None:
    with Guest(VmConfig(memory="3G"), progress=lambda s: print(s, file=sys.stderr)) as guest:
        out = guest.share / "fixtures"
        out.mkdir()
        res = guest.run(["python", "scripts/check_ipvs_backends.py", "--lab", "swarm",
                         "--record", str(out)], timeout=1200, stream=sys.stderr)
        if res.rc != 0:
            raise SystemExit(f"the swarm check failed in the VM (exit {res.rc})")
        for src, dst in (("swarm_bcc.swt", "swarm_vm_bcc.swt"),
                         ("swarm_core.swt", "swarm_vm_core.swt"), ("swarm.json", "swarm_vm.json")):
            shutil.copyfile(out / src, FIXTURES / dst)
            (FIXTURES / dst).chmod(0o644)  # read by tests that run as nobody
            print(FIXTURES / dst)


if __name__ == "__main__":
    main()
