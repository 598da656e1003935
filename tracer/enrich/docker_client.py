"""A docker SDK client for a long-lived reader: one connection pool per daemon.

The SDK's unix-socket adapter keys its connection pools by the whole request URL, so every
container, network or service id read gets a pool of its own, each keeping its connection to
dockerd open, up to 25 per client (its pool count; the SDK ignores `num_pools` for unix
sockets). A tracer that reads a node after every task replacement then holds one more idle
connection per new id until that bound. One pool for the daemon reuses the connections the
reader needs at once (a reading and the event stream).
"""

from __future__ import annotations

import docker
from docker.transport.unixconn import UnixHTTPAdapter

# The adapter is mounted for this prefix by the SDK (docker.api.client.APIClient).
_PREFIX = "http+docker://"


class _OnePool(UnixHTTPAdapter):  # type: ignore[misc]  # the SDK has no type hints
    def get_connection(self, url: str, proxies: object = None) -> object:
        return super().get_connection(_PREFIX, proxies)


def docker_client(url: str, timeout: int) -> docker.DockerClient:
    """A client of the daemon at unix socket `url` that keeps one connection pool."""
    client = docker.DockerClient(base_url=url, timeout=timeout)
    if not url.startswith("unix://"):
        return client  # a tracer reads local sockets; other transports as the SDK has them
    api = client.api
    old = api.adapters[_PREFIX]
    api.mount(_PREFIX, _OnePool(url.removeprefix("unix://"), timeout))
    old.close()  # it kept the connection that asked for the API version
    return client
