"""Commands run in the guest through its job agent (guest_agent.py): a job file written to the
share, its output followed there as the guest writes it, its exit code read back."""

from __future__ import annotations

import codecs
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, TextIO

from tracer.errors import LabError

POLL_S = 0.05
CANCEL_WAIT_S = 30.0  # for the agent to stop a job the host cancelled


class GuestResult(NamedTuple):
    """Exit code and combined stdout+stderr of one command run in the guest."""

    rc: int
    output: str


class Jobs:
    """One job at a time (the agent runs them in turn), in the share directory `share`.
    `alive` says whether the guest still runs, `console_tail` what it said last."""

    def __init__(self, share: Path, alive: Callable[[], bool],
                 console_tail: Callable[[], str]) -> None:
        self._share = share
        self._alive = alive
        self._console_tail = console_tail
        self._lock = threading.Lock()
        self._next_job = 0

    def run(self, argv: Sequence[str], timeout: float, stream: TextIO | None,
            env: Mapping[str, str], cwd: Path) -> GuestResult:
        """Run argv in the guest; rc 124 = timed out (killed in the guest), 130 = cancelled."""
        with self._lock:
            if not self._alive():
                raise LabError(f"the VM guest is not running: {self._console_tail()}")
            self._next_job += 1
            job_id = f"{self._next_job:06d}"
            jobs = self._share / "jobs"
            tmp = jobs / f"{job_id}.json.tmp"
            tmp.write_text(json.dumps({"argv": list(argv), "cwd": str(cwd), "env": dict(env)}))
            tmp.rename(jobs / f"{job_id}.json")
            output = _JobOutput(self._share / "out" / f"{job_id}.log", stream)
            try:
                done = self._collect(job_id, timeout, output)
                if done is None:
                    # Timed out by the host's clock: the guest's runs slow under emulation.
                    (jobs / f"{job_id}.cancel").write_text("timeout")
                    done = self._collect(job_id, CANCEL_WAIT_S, output)
                if done is None:
                    raise LabError(
                        f"the VM agent did not stop job {job_id}: {self._console_tail()}"
                    )
                return done
            except KeyboardInterrupt:
                (jobs / f"{job_id}.cancel").write_text("interrupt")
                self._collect(job_id, CANCEL_WAIT_S, output)
                raise
            finally:
                for leftover in (
                    jobs / f"{job_id}.cancel",
                    self._share / "out" / f"{job_id}.log",
                    self._share / "out" / f"{job_id}.rc",
                ):
                    leftover.unlink(missing_ok=True)

    def _collect(self, job_id: str, wait_s: float, output: _JobOutput) -> GuestResult | None:
        """The job's result, streaming its output meanwhile; None if not done within wait_s."""
        rc_file = self._share / "out" / f"{job_id}.rc"
        deadline = time.monotonic() + wait_s
        while not rc_file.exists():
            output.drain()
            if not self._alive():
                raise LabError(f"the VM died while running a command: {self._console_tail()}")
            if time.monotonic() > deadline:
                return None
            time.sleep(POLL_S)
        output.drain()
        return GuestResult(int(rc_file.read_text()), output.text())


class _JobOutput:
    """Follows a job's log file in the share as the guest writes it."""

    def __init__(self, path: Path, stream: TextIO | None) -> None:
        self._path = path
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._chunks: list[str] = []
        self._offset = 0

    def drain(self) -> None:
        try:
            with self._path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        text = self._decoder.decode(data)
        if text:
            self._chunks.append(text)
            if self._stream is not None:
                self._stream.write(text)
                self._stream.flush()

    def text(self) -> str:
        return "".join(self._chunks)
