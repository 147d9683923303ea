"""The SFTP server's host key, made the first time something needs it — the server when it
starts, or ``difusor register``, whose sheet gives the authority its fingerprint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import asyncssh

from difusor.errors import ConfigError
from difusor.paths import write_private


def host_key(path: Path, say: Callable[[str], None] = lambda _line: None) -> asyncssh.SSHKey:
    """The server's private host key, generated (ed25519, 0600) if ``path`` does not exist."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = asyncssh.generate_private_key("ssh-ed25519")
        write_private(path, key.export_private_key(), 0o600)
        say(f"SFTP: generé la llave del servidor {path} "
            f"({key.convert_to_public().get_fingerprint()})")
    try:
        return asyncssh.read_private_key(path)
    except (OSError, asyncssh.KeyImportError) as exc:
        raise ConfigError(f"sftp.host_key: no puedo leer la llave {path}: {exc}") from None
