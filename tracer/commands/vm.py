"""`swarmtrace vm run -- CMD`, `swarmtrace vm test -- [PYTEST ARGS]`: run in the stock-kernel VM."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tracer.errors import LabError
from tracer.signals import stop_signals_as_interrupt
from tracer.vm import Guest, VmConfig, in_guest

EPILOG = """examples:
  swarmtrace vm run -- uname -r                     the Debian stock kernel, not this host's
  swarmtrace vm run -- ipvsadm -A -f 261 -s rr      IPVS is real inside
  swarmtrace vm test -- tests/test_vm.py -x         pytest inside the guest
  swarmtrace vm run --memory 3G -- swarmtrace doctor

The guest boots this machine's / read-only (this repo writable in the guest only, writes are
lost at power-off), has no network device, and is powered off when the command ends.
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "vm",
        help="run a command or the tests inside the stock-kernel VM (kprobes, IPVS, BCC)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    vm_sub = p.add_subparsers(dest="vm_command", metavar="ACTION", required=True)
    run_p = vm_sub.add_parser("run", help="boot, run CMD inside, print its output, power off")
    _add_options(run_p, default_timeout=3600.0)
    run_p.add_argument("cmd", nargs=argparse.REMAINDER, help="command (after --)")
    run_p.set_defaults(func=run)
    test_p = vm_sub.add_parser("test", help="boot, run `python -m pytest ARGS` inside, power off")
    _add_options(test_p, default_timeout=1200.0)
    test_p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="pytest arguments (after --)")
    test_p.set_defaults(func=run)


def _add_options(p: argparse.ArgumentParser, default_timeout: float) -> None:
    p.add_argument("--memory", default="2G", help="guest memory (default 2G; 3G for swarm)")
    p.add_argument("--cpus", type=int, default=2, help="guest CPUs (default 2)")
    p.add_argument("--kernel", help="kernel version to boot (default: newest with headers)")
    kvm = p.add_mutually_exclusive_group()
    kvm.add_argument("--kvm", dest="kvm", action="store_true", default=None, help="force KVM")
    kvm.add_argument("--no-kvm", dest="kvm", action="store_false", help="force emulation")
    p.add_argument(
        "--timeout",
        type=float,
        default=default_timeout,
        help=f"seconds before the command is killed in the guest (default {default_timeout:g})",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no boot progress on stderr")


def _strip_dashes(args: Sequence[str]) -> list[str]:
    return list(args[1:]) if args and args[0] == "--" else list(args)


def _progress(quiet: bool) -> Callable[[str], None]:
    def show(line: str) -> None:
        if not quiet:
            print(f"swarmtrace vm: {line}", file=sys.stderr, flush=True)

    return show


def run(args: argparse.Namespace) -> int:
    if in_guest():
        raise LabError("already inside the VM guest: run the command directly")
    if args.vm_command == "run":
        argv = _strip_dashes(args.cmd)
        if not argv:
            raise LabError("nothing to run: swarmtrace vm run -- CMD [ARGS...]")
    else:
        argv = ["python", "-m", "pytest", *_strip_dashes(args.pytest_args)]
    config = VmConfig(memory=args.memory, cpus=args.cpus, kvm=args.kvm, kernel=args.kernel)
    return run_in_guest(config, argv, args.timeout, args.quiet)


def run_in_guest(config: VmConfig, argv: list[str], timeout: float, quiet: bool = False) -> int:
    """Boot the guest, stream argv's output, power off; the command's exit code."""
    show = _progress(quiet)
    stop_signals_as_interrupt()
    with Guest(config, progress=show) as guest:
        began = time.monotonic()
        result = guest.run(argv, timeout=timeout, stream=sys.stdout, cwd=Path.cwd())
        rss = guest.qemu_rss_mb()
        show(
            f"exit {result.rc} after {time.monotonic() - began:.1f} s "
            f"(boot {guest.boot_seconds:.0f} s, qemu RSS {rss or 0:.0f} MB); powering off"
        )
    return result.rc
