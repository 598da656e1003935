"""Stock-kernel VM lab: Debian's distribution kernel under QEMU (virtme-ng), where kprobes,
IPVS, kernel headers and BCC are real. `Guest` boots once and runs commands inside."""

from tracer.vm.boot import KernelImage, VmConfig, find_kernel, kvm_usable
from tracer.vm.guest import Guest, in_guest
from tracer.vm.jobs import GuestResult

__all__ = [
    "Guest",
    "GuestResult",
    "KernelImage",
    "VmConfig",
    "find_kernel",
    "in_guest",
    "kvm_usable",
]
