"""The SFTP listener: host key, ciphers, and a close that also ends the sessions it accepted."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import asyncssh

from difusor.config import Config, parse_address
from difusor.errors import DifusorError
from difusor.paths import StateLayout
from difusor.receive.sftp.checkkey import check_public_path
from difusor.receive.sftp.keyfiles import host_key
from difusor.receive.sftp.login import Connection, Policy
from difusor.receive.sftp.scratch import Scratch, clear_scratch, scratch_root
from difusor.receive.sftp.session import Uploads
from difusor.receive.sftp.uploads import Desk

# AES only. The client's order decides, and OpenSSH's client lists chacha20-poly1305 first, which
# asyncssh computes with a fresh cipher context per packet: on these 2-core machines dropping it
# (OpenSSH then picks aes128-ctr + umac-64-etm; paramiko, PuTTY and WinSCP AES too) took a 300 MB
# upload from ≈ 115 to ≈ 180 MB/s (median of 4 rounds, busy machine; bench/sftp_throughput.py).
CIPHERS = ["aes256-gcm@openssh.com", "aes128-gcm@openssh.com", "aes256-ctr", "aes192-ctr",
            "aes128-ctr"]


async def start_sftp_server(
    cfg: Config,
    *,
    on_delivered: Callable[[Path], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> asyncssh.SSHAcceptor:
    """Listen on ``[sftp] listen``; returns the listener (its ``close()`` also ends sessions)."""
    say = log or logging.getLogger("difusor.sftp").info
    layout = StateLayout(cfg.state_dir)
    layout.uploads.mkdir(parents=True, exist_ok=True)
    layout.inbox.mkdir(parents=True, exist_ok=True)
    desk = Desk(layout.uploads, layout.inbox, cfg.receive.temp_suffixes, on_delivered, say)
    gate = Policy(cfg.sftp.user, cfg.path(cfg.sftp.authorized_keys), cfg.sftp.allow_from, say,
                  check_pub=check_public_path(cfg))
    scratch = scratch_root(cfg)
    clear_scratch(scratch)

    def session(chan: asyncssh.SSHServerChannel) -> Uploads:
        owner = chan.get_connection().get_owner()
        if isinstance(owner, Connection) and owner.scratch:
            return Scratch(chan, scratch, cfg.receive.temp_suffixes, say)
        return Uploads(chan, desk)

    host, port = parse_address(cfg.sftp.listen)
    try:
        acceptor = await asyncssh.listen(
            host, port,
            server_host_keys=[host_key(cfg.path(cfg.sftp.host_key), say)],
            server_factory=lambda: Connection(gate, desk),
            sftp_factory=session,
            sftp_version=3, allow_scp=False, allow_pty=False, line_editor=False,
            agent_forwarding=False, x11_forwarding=False,
            login_timeout=60, keepalive_interval=30, keepalive_count_max=4,
            window=8 * 1024 * 1024, encryption_algs=CIPHERS,
        )
    except OSError as exc:
        raise DifusorError(f"SFTP: no puedo escuchar en {cfg.sftp.listen}: {exc.strerror}") from None
    return _Listener(acceptor, desk)


class _Listener(asyncssh.SSHAcceptor):
    """asyncssh's listener, except that closing it also ends the sessions it accepted."""

    def __init__(self, acceptor: asyncssh.SSHAcceptor, desk: Desk) -> None:
        self.__dict__.update(vars(acceptor))
        self.desk = desk

    def close(self) -> None:
        super().close()
        for conn in list(self.desk.connections):
            conn.close()

    async def wait_closed(self) -> None:
        await super().wait_closed()
        for conn in list(self.desk.connections):
            await conn.wait_closed()
