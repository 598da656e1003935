"""The least-privilege way the image runs on a node, in one place: the README's `docker run`,
the image tests and `swarmtrace deploy`'s service all take it from here.

Capabilities: see tracer/privileges.py for what was measured; on Docker 20.10, which knows no
CAP_BPF, SYS_ADMIN and NET_ADMIN are the floor for both backends.
Mounts: the node's Docker socket (names) and Docker's netns directory (the sandboxes to hook);
for bcc also tracefs (the functions it may probe; a container's own debugfs is empty) and the
node's kernel headers (/lib/modules/<release>/build points into /usr/src), which BCC compiles
against. All read-only but the socket.
"""

from __future__ import annotations

CAPABILITIES = ("SYS_ADMIN", "NET_ADMIN")  # as `docker run --cap-add` names them
SOCKET_IN_CONTAINER = "/var/run/docker.sock"
NETNS_IN_CONTAINER = "/var/run/docker/netns"
DEBUGFS, MODULES, SRC = BCC_PATHS = ("/sys/kernel/debug", "/lib/modules", "/usr/src")
# BTF is visible in a plain container's /sys; a Swarm task gets it bound explicitly as well.
NODE_PATHS = ("/sys/kernel/btf", *BCC_PATHS)


def read_only(path: str) -> list[str]:
    """`docker run` flags that bind the node's path at the same place, read-only."""
    return ["-v", f"{path}:{path}:ro"]


def docker_run_flags(docker_socket: str, netns_dir: str,
                     caps: tuple[str, ...] = CAPABILITIES,
                     read_only_paths: tuple[str, ...] = ()) -> list[str]:
    """`docker run` flags for the tracer on a node whose Docker listens on `docker_socket`
    (a path or unix:// URL) and keeps its sandboxes in `netns_dir`: no capability but `caps`,
    the host's network, and `read_only_paths` node paths (BCC_PATHS for bcc) bound read-only."""
    return ["--cap-drop", "ALL", *(f"--cap-add={c}" for c in caps), "--network", "host",
            "-v", f"{docker_socket.removeprefix('unix://')}:{SOCKET_IN_CONTAINER}",
            "-v", f"{netns_dir}:{NETNS_IN_CONTAINER}",
            *(arg for path in read_only_paths for arg in read_only(path))]
