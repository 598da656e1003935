"""Where collectors reach an agent: its listening socket, TLS and the token handshake."""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

from tracer.errors import RemoteError
from tracer.probes import netns
from tracer.remote import auth, wire
from tracer.remote.collector_queue import CollectorQueue
from tracer.tracefile.format import RecordType

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_S = 5.0


class AgentListener:
    """Accepts collectors that prove they hold the token, each as a CollectorQueue: header()
    is the first record one gets once in, welcome() runs before its queue starts sending."""

    def __init__(self, address: tuple[str, int], listen_netns: Path | None, token: bytes,
                 buffer_bytes: int, clock: Callable[[], int],
                 header: Callable[[], dict[str, object]], welcome: Callable[[], None]) -> None:
        self._token, self._buffer_bytes, self._clock = token, buffer_bytes, clock
        self._header, self._welcome = header, welcome
        self._ctx, self._cert_fp = auth.server_context()
        self._clients: list[CollectorQueue] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = self._listen(address, listen_netns)
        self.refused = 0

    @staticmethod
    def _listen(address: tuple[str, int], listen_netns: Path | None) -> socket.socket:
        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(address)
            s.listen(16)
            return s

        try:
            if listen_netns is None:
                return make()
            # A socket belongs to the netns it was made in: the node's, where its address is.
            with netns.entered(listen_netns):
                return make()
        except OSError as err:
            raise RemoteError(f"cannot listen on {address[0]}:{address[1]}: "
                              f"{err.strerror}; give the node's swarm address with --listen"
                              ) from err

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def accept_in_thread(self) -> threading.Thread:
        """Start accepting collectors in a thread of their own, until close()."""
        acceptor = threading.Thread(target=self._accept, name="agent-accept", daemon=True)
        acceptor.start()
        return acceptor

    def live(self) -> list[CollectorQueue]:
        """The collectors still connected."""
        with self._lock:
            self._clients = [c for c in self._clients if not c.closed]
            return list(self._clients)

    def close(self) -> None:
        """No more collectors; the connected ones are closed."""
        self._stop.set()
        with contextlib.suppress(OSError):
            # Shut down first: the acceptor's select() keeps a closed socket listening.
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            c.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                ready = select.select([self._sock], [], [], 0.3)[0]
                if not ready:
                    continue
                conn, peer = self._sock.accept()
            except (OSError, ValueError):
                return  # the listener was closed: stopping
            threading.Thread(target=self._handshake, args=(conn, f"{peer[0]}:{peer[1]}"),
                             name="agent-handshake", daemon=True).start()

    def _handshake(self, conn: socket.socket, peer: str) -> None:
        """TLS, then the collector proves it holds the token before it gets anything."""
        try:
            conn.settimeout(HANDSHAKE_TIMEOUT_S)
            tls = self._ctx.wrap_socket(conn, server_side=True)
            nonce = auth.new_nonce()
            tls.sendall(wire.json_frame(wire.WireType.HELLO, {"nonce": nonce.hex()}))
            msg = wire.read_json(tls, wire.WireType.AUTH)
            theirs = bytes.fromhex(str(msg["nonce"]))
            want = auth.proof(self._token, auth.ROLE_COLLECTOR, nonce, theirs, self._cert_fp)
            if not auth.check(want, bytes.fromhex(str(msg["proof"]))):
                self.refused += 1
                log.warning("refused collector %s: wrong token", peer)
                tls.close()
                return
            mine = auth.proof(self._token, auth.ROLE_AGENT, nonce, theirs, self._cert_fp)
            tls.sendall(wire.json_frame(wire.WireType.AUTH, {"proof": mine.hex()}))
            tls.sendall(wire.json_frame(RecordType.HEADER, self._header()))
        except (OSError, ssl.SSLError, RemoteError, ValueError, KeyError) as err:
            self.refused += 1
            log.warning("refused collector %s: %s", peer, err)
            conn.close()
            return
        client = CollectorQueue(tls, peer, self._buffer_bytes, self._clock)
        with self._lock:
            if self._stop.is_set():
                client.close()
                return
            self._clients.append(client)
        self._welcome()
        client.start()
        log.info("collector %s connected", peer)
