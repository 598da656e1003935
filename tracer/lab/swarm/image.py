"""The lab's only image, `bb:latest`: Debian's static busybox, imported (no registry exists)."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import docker

from tracer.errors import LabError

BUSYBOX = Path("/bin/busybox")
IMAGE = "bb:latest"


def _applets() -> list[str]:
    res = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise LabError(f"{BUSYBOX} --list failed: run scripts/setup (it installs busybox-static)")
    return [a for a in res.stdout.split() if a != "busybox"]


def rootfs_tar() -> bytes:
    """A root filesystem: /bin/busybox, one symlink per applet, empty /etc /tmp /proc ..."""
    if not BUSYBOX.is_file():
        raise LabError(f"{BUSYBOX} is missing: run scripts/setup (it installs busybox-static)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "www"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in _applets():
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buf.getvalue()


def import_image(client: docker.DockerClient, rootfs: bytes) -> None:
    repo, tag = IMAGE.split(":")
    try:
        client.api.import_image_from_data(rootfs, repository=repo, tag=tag,
                                          changes=["ENV PATH=/bin", 'CMD ["/bin/sh"]'])
        client.images.get(IMAGE)
    except docker.errors.DockerException as err:
        raise LabError(f"importing {IMAGE} failed: {err}") from err
