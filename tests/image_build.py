"""scripts/image for the tests: the image archive, built once per set of inputs (cached in
/var/cache/swarmtrace, so a clean clone builds it inside the test run)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_image(*args: str) -> Path:
    """`scripts/image ARGS`: the path of the `docker load` archive it printed."""
    res = subprocess.run([str(ROOT / "scripts" / "image"), *args], capture_output=True,
                         text=True, check=False, timeout=600)
    assert res.returncode == 0, res.stderr
    return Path(res.stdout.strip().splitlines()[-1])
