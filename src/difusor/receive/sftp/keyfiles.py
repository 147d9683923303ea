"""The SFTP server's own key files: written whole (a temporary name, then a rename) with their
mode from the start, and the host key made the first time something needs it — the server
when it starts, or ``difusor register``, whose sheet gives the authority its fingerprint."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import asyncssh

from difusor.errors import ConfigError


def write_key_file(path: Path, data: bytes, mode: int) -> None:
    """A private key is never readable by others, not even for a moment."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)  # the umask only takes bits away; an old .tmp may have kept its mode
    os.replace(tmp, path)


def host_key(path: Path, say: Callable[[str], None] = lambda _line: None) -> asyncssh.SSHKey:
    """The server's private host key, generated (ed25519, 0600) if ``path`` does not exist."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = asyncssh.generate_private_key("ssh-ed25519")
        write_key_file(path, key.export_private_key(), 0o600)
        say(f"SFTP: generé la llave del servidor {path} "
            f"({key.convert_to_public().get_fingerprint()})")
    try:
        return asyncssh.read_private_key(path)
    except (OSError, asyncssh.KeyImportError) as exc:
        raise ConfigError(f"sftp.host_key: no puedo leer la llave {path}: {exc}") from None
