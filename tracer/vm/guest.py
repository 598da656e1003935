"""A persistent stock-kernel guest: boot once, then run many commands in it (~1 s each).

The host and the guest's job agent (guest_agent.py) talk through files in one shared
directory, the only host directory the guest can write. qemu is found by pid among vng's
descendants and killed by that pid if the guest does not power off by itself.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, TextIO

from tracer import slowdown
from tracer.errors import LabError
from tracer.vm.boot import KernelImage, VmConfig, find_kernel, kvm_usable, venv_bin, vng_command
from tracer.vm.boot import vng_env as _vng_env

log = logging.getLogger(__name__)

GUEST_ENV_FLAG = "SWARMTRACE_VM_GUEST"
REPO = Path(__file__).resolve().parents[2]
_HERE = Path(__file__).resolve().parent
POLL_S = 0.05
STOP_WAIT_S = 30.0  # clean power-off under TCG takes a few seconds
HEARTBEAT_S = 2.0  # the agent powers the guest off when this stops (host killed uncleanly)
CANCEL_WAIT_S = 30.0  # for the agent to stop a job the host cancelled
# Boot time of an idle 2-CPU host (README: 30-50 s emulated): the measure of a slow guest.
REFERENCE_BOOT_S = {True: 10.0, False: 45.0}  # by KVM


class GuestResult(NamedTuple):
    """Exit code and combined stdout+stderr of one command run in the guest."""

    rc: int
    output: str


def in_guest() -> bool:
    """True inside a guest started by Guest (set for every job it runs)."""
    return os.environ.get(GUEST_ENV_FLAG) == "1"


@dataclass(frozen=True)
class _Proc:
    """A process identified by pid AND start time, so a reused pid is never killed."""

    pid: int
    start: str

    @staticmethod
    def stat(pid: int) -> list[str] | None:
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        # Fields after "(comm)"; comm may contain spaces and parentheses.
        return raw[raw.rindex(")") + 2 :].split()

    @classmethod
    def of(cls, pid: int) -> _Proc | None:
        fields = cls.stat(pid)
        return None if fields is None else cls(pid, fields[19])

    def alive(self) -> bool:
        fields = self.stat(self.pid)
        return fields is not None and fields[19] == self.start and fields[0] != "Z"


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _Proc.stat(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _find_qemu(vng_pid: int, share: Path) -> _Proc | None:
    """The qemu running our guest: vng also starts short-lived qemu probes, so match the share
    directory (unique per guest) on the command line."""
    for pid in _descendants(vng_pid):
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if Path(exe).name.startswith("qemu-system") and any(
            str(share).encode() in arg for arg in cmdline
        ):
            return _Proc.of(pid)
    return None


def guest_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of every command in the guest: this repo's venv first on PATH."""
    env = {
        "PATH": f"{venv_bin()}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        GUEST_ENV_FLAG: "1",
    }
    env.update(extra or {})
    return env


class Guest:
    """A stock-kernel VM running a job agent. Use as a context manager; stop() always cleans up.

    run() calls are serialised (the agent runs one job at a time).
    """

    def __init__(
        self,
        config: VmConfig | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config or VmConfig()
        self.kernel: KernelImage = find_kernel(self.config.kernel)
        self._progress = progress or log.info
        self._workdir: Path | None = None
        self._vng: subprocess.Popen[bytes] | None = None
        self._qemu: _Proc | None = None
        self._console: TextIO | None = None
        self._lock = threading.Lock()
        self._next_job = 0
        self._stop_beat = threading.Event()
        self._beat: threading.Thread | None = None
        self.boot_seconds: float | None = None
        self._began = 0.0  # when launch() started vng (monotonic)
        # Measured at boot: how much slower than the reference this guest runs (>= 1).
        self.slowdown = 1.0

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def share(self) -> Path:
        if self._workdir is None:
            raise LabError("the VM guest is not running: start it first")
        return self._workdir / "share"

    @property
    def qemu_pid(self) -> int | None:
        return self._qemu.pid if self._qemu else None

    def __enter__(self) -> Guest:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Boot the guest and wait until its agent answers; on any failure nothing is left."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start booting (qemu runs when this returns); wait_ready() waits for the guest.
        Two steps so that several guests can boot side by side (tracer/vm/link.py)."""
        self._workdir = Path(tempfile.mkdtemp(prefix="swarmtrace-vm-"))
        self.share.mkdir()
        (self.share / "heartbeat").touch()
        self._stop_beat.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="vm-heartbeat", daemon=True)
        self._beat.start()
        try:
            self._launch()
        except BaseException:
            self.stop()
            raise

    def wait_ready(self) -> None:
        """Wait until the launched guest's agent answers; on any failure nothing is left."""
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _heartbeat(self) -> None:
        beat = self.share / "heartbeat"
        while not self._stop_beat.wait(HEARTBEAT_S):
            try:
                beat.touch()
            except OSError:
                return

    def _launch(self) -> None:
        assert self._workdir is not None
        init = " ".join(
            shlex.quote(str(p))
            for p in (
                _HERE / "guest_init.sh",
                self.share,
                venv_bin() / "python3",
                _HERE / "guest_agent.py",
            )
        )
        cmd = vng_command(self.kernel, self.config, self.share, [REPO], f"sh {init}")
        log.debug("vm: %s", shlex.join(cmd))
        self._console = (self._workdir / "console.log").open("w")
        self._began = time.monotonic()
        self._vng = subprocess.Popen(
            cmd,
            # vng's own temporary files land in the workdir too, so stop() removes them even
            # when vng had to be killed before its atexit cleanup.
            env={**_vng_env(), "TMPDIR": str(self._workdir)},
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            # Own session: the terminal's Ctrl-C reaches only us; we stop the guest ourselves.
            start_new_session=True,
        )

    def _wait_ready(self) -> None:
        if self._vng is None:
            raise LabError("the VM guest was not launched: launch() it first")
        kvm = kvm_usable() if self.config.kvm is None else self.config.kvm
        began = self._began
        accel = "KVM" if kvm else "software emulation (no KVM: ~30 s)"
        # A loaded host boots slower: give the boot as much more time as the load says.
        boot_timeout = self.config.boot_timeout_s * slowdown.host_load()
        self._progress(f"booting {self.kernel.version} with {accel}")
        seen_lines = 0
        last_note = began
        while not (self.share / "ready").exists():
            now = time.monotonic()
            if self._vng.poll() is not None:
                raise LabError(
                    f"the VM exited during boot (rc {self._vng.returncode}): {self._console_tail()}"
                )
            if now - began > boot_timeout:
                raise LabError(
                    f"the VM did not come up within {boot_timeout:.0f} s (host load "
                    f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs): {self._console_tail()}"
                )
            if self._qemu is None:
                self._qemu = _find_qemu(self._vng.pid, self.share)
            lines = self._progress_lines()
            for line in lines[seen_lines:]:
                self._progress(f"{line} ({now - began:.0f} s)")
                last_note = now
            seen_lines = len(lines)
            if now - last_note >= 10:
                self._progress(f"still booting ({now - began:.0f} s)")
                last_note = now
            time.sleep(0.2)
        self.boot_seconds = time.monotonic() - began
        if self._qemu is None:
            self._qemu = _find_qemu(self._vng.pid, self.share)
        self.slowdown = max(
            slowdown.from_boot(self.boot_seconds, REFERENCE_BOOT_S[kvm]), slowdown.host_load()
        )
        self._progress(
            f"guest ready in {self.boot_seconds:.0f} s; waits in the guest scaled "
            f"x{self.slowdown:.1f}"
        )

    def _progress_lines(self) -> list[str]:
        try:
            return (self.share / "progress").read_text().splitlines()
        except OSError:
            return []

    def _console_tail(self) -> str:
        assert self._workdir is not None
        try:
            lines = (self._workdir / "console.log").read_text(errors="replace").splitlines()
        except OSError:
            return "no console output"
        tail = [line.strip() for line in lines if line.strip()][-3:]
        return " | ".join(tail) or "no console output"

    def stop(self) -> None:
        """Power the guest off (kill qemu by pid if it does not go), remove every file."""
        if self._vng is not None:
            # Only a running agent can power the guest off; during boot qemu is killed at once.
            agent_up = self._workdir is not None and (self.share / "ready").exists()
            if agent_up and self._vng.poll() is None:
                (self.share / "stop").touch()
                try:
                    self._vng.wait(timeout=STOP_WAIT_S)
                except subprocess.TimeoutExpired:
                    log.warning("vm: guest did not power off; killing qemu")
            if self._qemu is None and self._vng.poll() is None:
                self._qemu = _find_qemu(self._vng.pid, self.share)
            if self._qemu is not None:
                self._kill(self._qemu)
            if self._vng.poll() is None:
                os.killpg(self._vng.pid, signal.SIGKILL)
            self._vng.wait()
            self._vng = None
        self._stop_beat.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        if self._console is not None:
            self._console.close()
            self._console = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    @staticmethod
    def _kill(proc: _Proc) -> None:
        for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if not proc.alive():
                return
            os.kill(proc.pid, sig)
            deadline = time.monotonic() + wait_s
            while proc.alive() and time.monotonic() < deadline:
                time.sleep(0.1)
        if proc.alive():
            raise LabError(f"qemu (pid {proc.pid}) survived SIGKILL; kill it by hand")

    def alive(self) -> bool:
        return self._vng is not None and self._vng.poll() is None

    def qemu_rss_mb(self) -> float | None:
        """Host memory used by the guest's qemu process."""
        if self._qemu is None:
            return None
        try:
            status = Path(f"/proc/{self._qemu.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return None

    def share_file(self, path: Path) -> Path:
        """Where the guest reads host file `path` for the rest of its life.

        The guest's /var, /tmp and /run are its own, so a file there (an image archive in
        /var/cache) is not visible inside. A hard link in the share is, at no cost, and keeps
        the file even if the host replaces the original meanwhile; across filesystems, a copy.
        """
        files = self.share / "files"
        files.mkdir(exist_ok=True)
        dest = files / path.name
        dest.unlink(missing_ok=True)
        try:
            dest.hardlink_to(path)
        except OSError:
            shutil.copy2(path, dest)
        return dest

    # -- jobs -------------------------------------------------------------------------------

    def run(
        self,
        cmd: str | Sequence[str],
        timeout: float = 600.0,
        *,
        stream: TextIO | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> GuestResult:
        """Run `cmd` in the guest (a string goes through sh -c) and wait for it.

        Output is returned and, if `stream` is given, written there as it arrives.
        rc 124 = timed out (killed in the guest), 130 = cancelled (Ctrl-C on the host).
        The timeout, and the waits inside the job, scale with the slowdown measured at boot.
        """
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        timeout *= self.slowdown
        env = {slowdown.ENV: f"{self.slowdown:.2f}", **(env or {})}
        with self._lock:
            if not self.alive():
                raise LabError(f"the VM guest is not running: {self._console_tail()}")
            self._next_job += 1
            job_id = f"{self._next_job:06d}"
            job = {"argv": argv, "cwd": str(cwd or REPO), "env": guest_env(env)}
            jobs = self.share / "jobs"
            tmp = jobs / f"{job_id}.json.tmp"
            tmp.write_text(json.dumps(job))
            tmp.rename(jobs / f"{job_id}.json")
            output = _JobOutput(self.share / "out" / f"{job_id}.log", stream)
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
                    self.share / "out" / f"{job_id}.log",
                    self.share / "out" / f"{job_id}.rc",
                ):
                    leftover.unlink(missing_ok=True)

    def _collect(self, job_id: str, wait_s: float, output: _JobOutput) -> GuestResult | None:
        """The job's result, streaming its output meanwhile; None if not done within wait_s."""
        rc_file = self.share / "out" / f"{job_id}.rc"
        deadline = time.monotonic() + wait_s
        while not rc_file.exists():
            output.drain()
            if not self.alive():
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
