"""Output files that never destroy what they replace before the new content is complete.

A regular OUT is written as a new file beside it (O_EXCL|O_NOFOLLOW: nothing planted there is
followed), synced, then renamed over OUT. A symbolic link at OUT is refused: in a shared
directory it may point at someone else's file. A device or FIFO at OUT (/dev/null, a pipe to
another tool) is written in place, since renaming over it would replace the device itself.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from types import TracebackType

from tracer.errors import OutputError


class OutputFile:
    """Use as a context manager: `.fd` is open for writing; a clean exit publishes it."""

    def __init__(self, path: str | os.PathLike[str], *, mode: int = 0o666) -> None:
        self.path = Path(path)
        self.replaced: int | None = None  # size of the regular file this output replaces
        self._temp: Path | None = None
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            st = None
        except OSError as err:
            raise OutputError(f"cannot write {self.path}: {err.strerror}") from err
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise OutputError(
                f"{self.path} is a symbolic link: swarmtrace does not write through links "
                "(give the path it points to, or remove the link)"
            )
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{self.path} is a directory: give a file name to write")
        try:
            if st is not None and not stat.S_ISREG(st.st_mode):
                self.fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                return
            self.replaced = st.st_size if st is not None else None
            temp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            self.fd = os.open(temp, flags, mode)
            self._temp = temp
        except OSError as err:
            raise OutputError(f"cannot write {self.path}: {err.strerror}") from err

    def __enter__(self) -> OutputFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.publish()
            self.close()
            return
        self.discard()
        if isinstance(exc, OSError) and exc.filename is None:
            # A write through the fd failed (ENOSPC, EIO, a device that refuses): name OUT.
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    @property
    def reopen_path(self) -> str:
        """A path that opens this very file (for writers that take a path, not an fd)."""
        return f"/proc/self/fd/{self.fd}"

    def publish(self) -> None:
        """Sync the new content and put it in OUT's place (nothing to do for a device)."""
        if self._temp is None:
            return
        try:
            os.fsync(self.fd)
            os.rename(self._temp, self.path)
        except OSError as err:
            self.discard()
            raise OutputError(f"cannot write {self.path}: {err.strerror}") from err
        self._temp = None

    def release(self) -> int:
        """Hand the fd over to the caller (after publish(); the caller closes it)."""
        fd, self.fd = self.fd, -1
        return fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        """Close and remove the unfinished new file; OUT stays as it was."""
        self.close()
        if self._temp is not None:
            self._temp.unlink(missing_ok=True)
            self._temp = None

    def replaced_note(self) -> str:
        """' (replaced a file of N bytes)' when OUT existed, else ''."""
        return "" if self.replaced is None else f" (replaced a file of {self.replaced} bytes)"
