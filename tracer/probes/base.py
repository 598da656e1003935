"""What the live probe backends share: start on enter, close on exit or failed start, and
draining their ring buffer."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import numpy as np

from tracer.probes.ringbuf import RingReader
from tracer.source import SourceInfo

# Events handed out per poll. After the tracer was held off the CPU the ring holds a backlog
# (16 MiB, ~190k events); read at once, that poll's decoded columns, requests and output took
# ~100 MiB that the allocator kept after they were freed (RSS +41 MiB after a 20 s stall at
# 1,000 requests/s, +50 more after 30 s). The rest comes at the next poll, which does not wait
# while events are pending (RingReader.wait).
POLL_EVENTS = 8192


class ProbeSource:
    """Base of live EventSources: subclasses attach in _start() and detach in _detach()."""

    info: SourceInfo

    def __init__(self) -> None:
        self._reader: RingReader | None = None
        self._events = 0

    def _start(self) -> None:
        raise NotImplementedError

    def _detach(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.close()  # a half-attached backend leaves nothing behind
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def poll(self, timeout_s: float) -> np.ndarray:
        assert self._reader is not None, "use the source as a context manager"
        self._reader.wait(timeout_s)
        out = self._reader.read(POLL_EVENTS)
        self._events += len(out)
        return out

    @property
    def finished(self) -> bool:
        return False  # live sources end when closed

    def close(self) -> None:
        if self._reader:
            self._reader.close()
            self._reader = None
        self._detach()
