#!/usr/bin/env python3
"""Inside the stock-kernel VM: trace the netns lab (real IPVS) with a backend and compare each
request's real server with IPVS's own connection table and with the backend that answered.

Prints one JSON object: {"backend", "requests", "answers", "ipvs"} (used by tests/test_ipvs_vm.py).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import time

from tracer import lab

READY = "swarmtrace: tracing with"


def ipvs_connections(netns: str) -> dict[str, str]:
    """client ip:port -> real server ip:port from `ipvsadm -lnc` in a netns."""
    out = subprocess.run(["ip", "netns", "exec", netns, "ipvsadm", "-lnc"], capture_output=True,
                         text=True, check=True).stdout
    conns = {}
    for line in out.splitlines():
        m = re.match(r"\s*TCP\s+\S+\s+\S+\s+(\S+)\s+(\S+)\s+(\S+)", line)
        if m:
            conns[m.group(1)] = m.group(3)
    return conns


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", required=True, choices=("core", "bcc"))
    ap.add_argument("--count", type=int, default=4, help="requests per mode")
    ap.add_argument("--modes", default="mesh,vip", help="lab traffic modes, comma separated")
    args = ap.parse_args()
    info = lab.up()
    try:
        n = args.count
        modes = args.modes.split(",")
        proc = subprocess.Popen([sys.executable, "-m", "tracer", "trace", "--backend",
                                 args.backend, "--json", "--count", str(len(modes) * n),
                                 "--port", "8080", "--addr", "10.0.0.9", "--timeout", "300"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        notes = []
        for line in proc.stderr:
            notes.append(line.rstrip())
            if line.startswith(READY):
                break
        time.sleep(1)
        answers = [a for mode in modes for a in lab.traffic(mode, n)]  # type: ignore[arg-type]
        ipvs = {**ipvs_connections("stlab-ingress_sbox"), **ipvs_connections("stlab-vip-client")}
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            # Report what was traced so far: the test then says what is missing.
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        print(json.dumps({
            "backend": args.backend,
            "lb": info.lb,
            "notes": notes + err.splitlines(),
            "requests": [json.loads(line) for line in out.splitlines()],
            "answers": [a.to_json() for a in answers],
            "ipvs": ipvs,
        }))
    finally:
        lab.down()


if __name__ == "__main__":
    main()
