"""A persistent stock-kernel guest: boot once, then run many commands in it (~1 s each).

The host and the guest's job agent (guest_agent.py) talk through files in one shared
directory, the only host directory the guest can write (jobs.py). qemu is found by pid among
vng's descendants and killed by that pid if the guest does not power off (qemu_proc.py).
"""

from __future__ import annotations

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
from pathlib import Path
from types import TracebackType
from typing import TextIO

from tracer import slowdown
from tracer.errors import LabError
from tracer.vm.boot import KernelImage, VmConfig, find_kernel, venv_bin, vng_command
from tracer.vm.boot import vng_env as _vng_env
from tracer.vm.boot_wait import console_tail, wait_for_boot
from tracer.vm.jobs import GuestResult, Jobs
from tracer.vm.qemu_proc import QemuProc, find_qemu

log = logging.getLogger(__name__)

GUEST_ENV_FLAG = "SWARMTRACE_VM_GUEST"
REPO = Path(__file__).resolve().parents[2]
_HERE = Path(__file__).resolve().parent
STOP_WAIT_S = 30.0  # clean power-off under TCG takes a few seconds
HEARTBEAT_S = 2.0  # the agent powers the guest off when this stops (host killed uncleanly)


def in_guest() -> bool:
    """True inside a guest started by Guest (set for every job it runs)."""
    return os.environ.get(GUEST_ENV_FLAG) == "1"


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
        self._qemu: QemuProc | None = None
        self._console: TextIO | None = None
        self._jobs: Jobs | None = None
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
        self._jobs = Jobs(self.share, self.alive, self._console_tail)
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
        assert self._workdir is not None
        booted = wait_for_boot(self._vng, self.share, self._workdir / "console.log",
                               self._began, self.kernel, self.config, self._progress)
        self.boot_seconds, self.slowdown = booted.seconds, booted.slowdown
        self._qemu = self._qemu or booted.qemu

    def _console_tail(self) -> str:
        assert self._workdir is not None
        return console_tail(self._workdir / "console.log")

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
                self._qemu = find_qemu(self._vng.pid, self.share)
            if self._qemu is not None:
                self._qemu.kill()
            if self._vng.poll() is None:
                os.killpg(self._vng.pid, signal.SIGKILL)
            self._vng.wait()
            self._vng = None
        self._jobs = None
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

    def alive(self) -> bool:
        return self._vng is not None and self._vng.poll() is None

    def qemu_rss_mb(self) -> float | None:
        """Host memory used by the guest's qemu process."""
        return None if self._qemu is None else self._qemu.rss_mb()

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
        if self._jobs is None:
            raise LabError("the VM guest is not running: start it first")
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        env = {slowdown.ENV: f"{self.slowdown:.2f}", **(env or {})}
        return self._jobs.run(argv, timeout * self.slowdown, stream, guest_env(env), cwd or REPO)
