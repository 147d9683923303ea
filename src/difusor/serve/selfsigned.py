"""A self-signed certificate for development and tests (``difusor init --self-signed-tls``).

EC P-256, valid 90 days, for ``localhost``, ``127.0.0.1``, ``::1`` and whatever host the server
listens on. Browsers warn about it, as they should: production uses a certificate from a CA
(Let's Encrypt, see docs/nginx.md). The key is written 0600, the certificate 0644.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAYS = 90
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


def self_signed(hosts: Iterable[str] = DEFAULT_HOSTS, *, days: int = DAYS,
                name: str = "difusor (desarrollo)") -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for ``hosts`` (names or IP addresses)."""
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for host in dict.fromkeys(h.strip("[]") for h in hosts if h):
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            alt.append(x509.DNSName(host))
        else:
            if not addr.is_unspecified:  # 0.0.0.0 / :: is no address a client dials
                alt.append(x509.IPAddress(addr))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        # A CA for itself, so clients can trust this very file (cafile=...) to verify it.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_self_signed(cert_path: Path, key_path: Path, hosts: Iterable[str] = DEFAULT_HOSTS, *,
                      days: int = DAYS) -> None:
    """Write a fresh certificate and key (replacing any there); the key is never world-readable,
    not even for a moment."""
    cert, key = self_signed([*DEFAULT_HOSTS, *hosts], days=days)
    for path, data, mode in ((key_path, key, 0o600), (cert_path, cert, 0o644)):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
