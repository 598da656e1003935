"""The deployment token, the TLS contexts, and the proof that each side holds the token.

TLS choice: every agent makes a fresh self-signed certificate when it starts; the collector
does not check it against any CA. Instead both sides prove they hold the deployment's token
with an HMAC over fresh nonces and the SHA-256 of the agent's certificate as each side saw
it (channel binding, like RFC 5929's tls-server-end-point). A man in the middle must present
its own certificate, so the collector's proof, bound to that certificate, is worthless to
the real agent, and it cannot forge one without the token. So the token (one Swarm secret)
is the only thing to distribute: no CA, no certificate files to deploy, rotate or pin, and
the stream is still encrypted (TLS 1.3) and authenticated both ways. Python's ssl module has
no TLS-PSK before 3.13, which would otherwise be the natural fit.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import secrets
import ssl
import stat
import tempfile
from pathlib import Path

from tracer.errors import RemoteError

DEFAULT_TOKEN_FILE = Path("/etc/swarmtrace/token")
MIN_TOKEN_CHARS = 16
NONCE_BYTES = 32
ROLE_COLLECTOR = b"swarmtrace collector v1"
ROLE_AGENT = b"swarmtrace agent v1"


def load_token(path: Path) -> bytes:
    """The token in `path`; refused unless only its owner can read it."""
    try:
        st = path.stat()
        text = path.read_text().strip()
    except OSError as err:
        raise RemoteError(f"cannot read the token file {path}: {err.strerror} (make one with "
                          "`swarmtrace agent --new-token FILE`)") from err
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise RemoteError(f"the token file {path} is readable by others: chmod 600 {path}")
    if len(text) < MIN_TOKEN_CHARS:
        raise RemoteError(f"the token in {path} is shorter than {MIN_TOKEN_CHARS} characters: "
                          "make a new one with `swarmtrace agent --new-token FILE`")
    return text.encode()


def new_token(path: Path) -> bytes:
    """Write a fresh random token to `path`, readable by its owner only."""
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(token + "\n")
    return token.encode()


def server_context() -> tuple[ssl.SSLContext, bytes]:
    """A TLS server context with a fresh self-signed certificate, and its fingerprint."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "swarmtrace agent")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    # load_cert_chain reads files only: a private directory that lives for this call.
    with tempfile.TemporaryDirectory(prefix="swarmtrace-tls-") as tmp:
        pem = Path(tmp) / "agent.pem"
        fd = os.open(pem, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        ctx.load_cert_chain(pem)
    return ctx, fingerprint(der)


def client_context() -> ssl.SSLContext:
    """The collector's TLS context: the agent is authenticated by its token proof, bound to
    its certificate's fingerprint, not by a CA (see the module docstring)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def fingerprint(der: bytes) -> bytes:
    return hashlib.sha256(der).digest()


def peer_fingerprint(sock: ssl.SSLSocket) -> bytes:
    der = sock.getpeercert(binary_form=True)
    if not der:
        raise RemoteError("the agent sent no TLS certificate")
    return fingerprint(der)


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def proof(token: bytes, role: bytes, agent_nonce: bytes, collector_nonce: bytes,
          cert_fp: bytes) -> bytes:
    """HMAC-SHA256 over the role, both nonces and the agent certificate's fingerprint."""
    msg = b"\0".join((role, agent_nonce, collector_nonce, cert_fp))
    return hmac.new(token, msg, hashlib.sha256).digest()


def check(expected: bytes, got: bytes) -> bool:
    return hmac.compare_digest(expected, got)
