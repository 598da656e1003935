"""Pick the probe backend: bcc where kprobes, headers and BCC exist, else core.

The rule and its checks are the doctor's, so `swarmtrace doctor` and `--backend auto` agree."""

from __future__ import annotations

import os

from tracer import privileges
from tracer.doctor import Support, check_bcc, check_headers, check_kprobes, choose_backend
from tracer.errors import ProbeUnavailable
from tracer.kernel_features import kernel_config
from tracer.probes.netns import NetnsScope
from tracer.source import EventSource, Filter


def choose(name: str) -> tuple[str, str]:
    """The backend to use for `--backend name` ("auto", "core", "bcc"), and why."""
    if name == "core":
        return "core", "asked for"
    if name == "bcc" and (lacking := privileges.explain("bcc", privileges.current())):
        raise ProbeUnavailable(lacking)  # not "kprobes missing": the kernel refused to try
    kprobes, headers, bcc = check_kprobes(kernel_config()), check_headers(), check_bcc()
    if name == "bcc" and kprobes.support is bcc.support is Support.YES:
        from tracer.probes.bcc import missing_files

        if lacking := missing_files(os.uname().release):
            raise ProbeUnavailable(lacking)
    pick = choose_backend(kprobes, headers, bcc)
    if name == "bcc" and pick.backend != "bcc":
        raise ProbeUnavailable(f"the bcc backend cannot run here ({pick.reason}): "
                               "use --backend core (BTF kernels), or install your "
                               "distribution's BCC and kernel headers (`swarmtrace doctor` "
                               "names them)")
    return pick.backend, "asked for" if name == "bcc" else pick.reason


def open_source(backend: str, flt: Filter, scope: NetnsScope | None = None) -> EventSource:
    """An unstarted source of the backend choose() picked ("core" or "bcc"); `scope` limits
    the netns the core backend hooks (bcc traces the whole kernel: its caller filters)."""
    if lacking := privileges.explain(backend, privileges.current()):
        raise ProbeUnavailable(lacking)
    if backend == "bcc":
        from tracer.probes.bcc import BccSource

        return BccSource(flt)
    from tracer.probes.core import CoreSource

    return CoreSource(flt, scope=scope)
