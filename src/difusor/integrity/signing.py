"""The difusor's Ed25519 key: made at ``init`` (or the first activation), kept 0600, its public
half published in every chain and in the registration kit with an SSH-style fingerprint."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from difusor.config import Config
from difusor.paths import write_private

ALGORITHM = "Ed25519"


def key_path(cfg: Config) -> Path:
    return cfg.path(cfg.integrity.key)


def load_or_create(path: Path) -> Ed25519PrivateKey:
    """The key at ``path``; made (PKCS#8 PEM, 0600, never readable by others) if missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        write_private(path, pem, 0o600)
        return key
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{path} no es una llave Ed25519")
    return loaded


def public_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def fingerprint(public: str) -> str:
    """``SHA256:…`` of the raw public key (base64 without padding, as OpenSSH prints)."""
    digest = hashlib.sha256(base64.b64decode(public)).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data)).decode("ascii")


def valid(public: str, signature: str, data: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(public)).verify(
            base64.b64decode(signature), data)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
