"""One exception type per domain; the CLI turns each into one clear line and a non-zero exit."""


class SwarmtraceError(Exception):
    """Base: str(err) is the line shown to the user (what went wrong and how to fix it)."""

    exit_code = 1


class ProbeUnavailable(SwarmtraceError):
    """A probe backend cannot run on this kernel or host."""

    exit_code = 3


class LabError(SwarmtraceError):
    """The lab could not be built, used or removed."""

    exit_code = 4


class TraceFileError(SwarmtraceError):
    """A trace file is missing, damaged, or of an unsupported version."""

    exit_code = 5


class TopologyError(SwarmtraceError):
    """Docker or netns metadata could not be read."""

    exit_code = 6


class FilterError(SwarmtraceError):
    """A filter expression that cannot be compiled or applied in the kernel."""

    exit_code = 2


class OutputError(SwarmtraceError):
    """Output cannot be written: a full disk, an unsafe or unusable path."""

    exit_code = 8


# A command that read a damaged or incomplete trace showed everything readable, then exits
# with this status (not an exception: the output is valid, only partial).
EXIT_TRACE_DAMAGED = 7


class RemoteError(SwarmtraceError):
    """An agent or collector cannot start: token, address, certificate."""

    exit_code = 9
