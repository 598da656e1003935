"""Job agent that runs INSIDE the guest (standalone: stdlib only, never imports tracer).

It polls SHARE/jobs for job files the host drops there and runs them one at a time:
  jobs/<id>.json    {"argv": [...], "cwd": str, "env": {...}}                      (host)
  jobs/<id>.cancel  stop the job: "timeout" or "interrupt" (Ctrl-C on the host)    (host)
  out/<id>.log      the job's stdout and stderr, written as it runs                 (agent)
  out/<id>.rc       its exit code, written last and atomically                      (agent)
  ready             the agent is listening (JSON: kernel release)                   (agent)
  stop              the host wants the guest to power off                           (host)
  heartbeat         touched by the host every few seconds while it lives            (host)
Polling (not inotify) because the share is 9p, where host-side changes raise no events.
Timeouts are the host's: under emulation on a busy host the guest clock falls far behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.1
HOST_GONE_S = 60.0  # heartbeat unchanged this long (guest clock): the host died uncleanly
TIMED_OUT_RC = 124  # as timeout(1)
CANCELLED_RC = 130


class Heartbeat:
    """Notices a host that died without stopping the guest (SIGKILL), so the guest powers
    itself off instead of running forever. Compares mtimes only: the clocks differ."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._last: int | None = None
        self._changed = time.monotonic()

    def host_alive(self) -> bool:
        try:
            mtime = self._path.stat().st_mtime_ns
        except OSError:
            return False  # the share is gone: so is the host's Guest
        now = time.monotonic()
        if mtime != self._last:
            self._last, self._changed = mtime, now
        return now - self._changed < HOST_GONE_S


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.rename(path)


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _stop_job(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the job's process group, SIGKILL it if it lingers."""
    _kill_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        _kill_group(proc, signal.SIGKILL)
        proc.wait()


def run_job(share: Path, job_id: str, job: dict[str, object], heartbeat: Heartbeat) -> int:
    log = share / "out" / f"{job_id}.log"
    cancel = share / "jobs" / f"{job_id}.cancel"
    with log.open("wb", buffering=0) as out:
        try:
            proc = subprocess.Popen(
                job["argv"],  # type: ignore[call-overload]
                cwd=job["cwd"],
                env=job["env"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: a timeout kills all it started
            )
        except OSError as err:
            out.write(f"swarmtrace-vm: cannot start {job['argv']}: {err}\n".encode())
            return 127
        while proc.poll() is None:
            if not heartbeat.host_alive():
                _stop_job(proc)
                return CANCELLED_RC
            if cancel.exists():
                _stop_job(proc)
                reason = cancel.read_text().strip() or "interrupt"
                out.write(f"\nswarmtrace-vm: stopped by the host ({reason})\n".encode())
                return TIMED_OUT_RC if reason == "timeout" else CANCELLED_RC
            time.sleep(POLL_S)
        # A job killed by a signal reports 128+N, as a shell would.
        rc: int = proc.returncode
        return rc if rc >= 0 else 128 - rc


def serve(share: Path) -> None:
    jobs = share / "jobs"
    (share / "out").mkdir(exist_ok=True)
    jobs.mkdir(exist_ok=True)
    heartbeat = Heartbeat(share / "heartbeat")
    _write_atomic(share / "ready", json.dumps({"kernel": os.uname().release}))
    while not (share / "stop").exists() and heartbeat.host_alive():
        pending = sorted(p for p in jobs.iterdir() if p.suffix == ".json")
        if not pending:
            time.sleep(POLL_S)
            continue
        path = pending[0]
        job_id = path.stem
        try:
            job = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            (share / "out" / f"{job_id}.log").write_text(f"swarmtrace-vm: bad job: {err}\n")
            rc = 2
        else:
            rc = run_job(share, job_id, job, heartbeat)
        path.unlink(missing_ok=True)
        _write_atomic(share / "out" / f"{job_id}.rc", str(rc))


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
