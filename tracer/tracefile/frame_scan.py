"""Reading a trace file frame by frame, and finding the next intact frame after damage."""

from __future__ import annotations

import errno
import os
import re

from tracer.tracefile.format import FRAME, MAX_FRAME_BYTES, frame_crc

RESYNC_BLOCK = 1 << 20
RESYNC_CHECK_BYTES = 64 << 20  # payload bytes read to check candidates, plus twice the file
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # every payload is one zstd frame
# Where a frame may start: a record type (never 0), then the two reserved fields (zero).
_FRAME_START = re.compile(rb"[^\x00]\x00\x00\x00")


class Damage(Exception):
    """A frame that cannot be used."""


class FrameScanner:
    """The frames of an open trace file (fd): each checked whole before it is handed out."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._check_budget = 0

    def start_scan(self) -> None:
        """Before a pass over the file: what checking resync candidates may read in it."""
        self._check_budget = RESYNC_CHECK_BYTES + 2 * os.fstat(self._fd).st_size

    def frame(self, pos: int) -> tuple[int, bytes]:
        """(type, payload) of the frame at pos; EOFError at the end, Damage if unusable."""
        head = os.pread(self._fd, FRAME.size, pos)
        if not head:
            raise EOFError
        if len(head) < FRAME.size:
            raise Damage("truncated (partial record header)")
        kind, reserved1, reserved2, length, crc = FRAME.unpack(head)
        if not kind or reserved1 or reserved2 or not 0 < length <= MAX_FRAME_BYTES:
            raise Damage("damaged (not a record header)")
        payload = os.pread(self._fd, length, pos + FRAME.size)
        if len(payload) < length:
            raise Damage("truncated (partial record)")
        if frame_crc(head[:8], payload) != crc:
            raise Damage("damaged (checksum mismatch)")
        return kind, payload

    def next_intact(self, start: int) -> int | None:
        """Offset of the next intact frame at or after start, or None."""
        pos = start
        size = os.fstat(self._fd).st_size
        while True:
            try:
                # A file extended by `truncate` is a hole: jump over it instead of reading it.
                pos = os.lseek(self._fd, pos, os.SEEK_DATA)
            except OSError as err:
                if err.errno == errno.ENXIO:
                    return None  # nothing but a hole up to the end
                if err.errno != errno.EINVAL:  # EINVAL: no SEEK_DATA here; read it all
                    raise
            block = os.pread(self._fd, RESYNC_BLOCK, pos)
            if len(block) < FRAME.size + len(_ZSTD_MAGIC):
                return None
            last = len(block) - FRAME.size - len(_ZSTD_MAGIC) + 1
            if block.count(0) == len(block):  # zeros written out: 15x faster than the regex
                pos += last
                continue
            for m in _FRAME_START.finditer(block, 0, last):
                at = m.start()
                length = FRAME.unpack_from(block, at)[3]
                if not (
                    0 < length <= MAX_FRAME_BYTES
                    and pos + at + FRAME.size + length <= size
                    and block.startswith(_ZSTD_MAGIC, at + FRAME.size)
                    and length <= self._check_budget
                ):
                    continue
                # Checking a candidate reads its payload: a file of crafted candidates must
                # not make that quadratic, so what all of them may cost is bounded.
                self._check_budget -= length
                try:
                    self.frame(pos + at)
                except (Damage, EOFError):
                    continue
                return pos + at
            pos += last
