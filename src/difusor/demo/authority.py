"""The synthetic authority's uploader: what IEM's system does every corte, over SFTP.

Each corte is one SSH connection: the sidecar first, then the package under a temporary
``.part`` name renamed to its final name once whole — the habit of careful SFTP clients.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh


def make_key(private: Path) -> Path:
    """An ed25519 key pair for the authority; returns the public key's path."""
    key = asyncssh.generate_private_key("ssh-ed25519", comment="autoridad-sintetica")
    private.parent.mkdir(parents=True, exist_ok=True)
    key.write_private_key(str(private))
    private.chmod(0o600)
    public = private.with_name(private.name + ".pub")
    key.write_public_key(str(public))
    return public


def upload(package: Path, *, host: str, port: int, user: str, key: Path,
           sidecar: Path | None = None) -> None:
    asyncio.run(_upload(package, host=host, port=port, user=user, key=key, sidecar=sidecar))


async def _upload(package: Path, *, host: str, port: int, user: str, key: Path,
                  sidecar: Path | None) -> None:
    async with asyncssh.connect(host, port, username=user, client_keys=[str(key)],
                                known_hosts=None, agent_path=None) as conn, \
            conn.start_sftp_client() as sftp:
        if sidecar is not None:
            await sftp.put(str(sidecar), sidecar.name)
        temp = package.name + ".part"
        await sftp.put(str(package), temp)
        await sftp.rename(temp, package.name)
