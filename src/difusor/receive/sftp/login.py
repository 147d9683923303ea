"""Who may connect to the SFTP receiver: the address check, then public-key login for one user."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import asyncssh

from difusor.receive.sftp.uploads import Desk, Log


class Policy:
    def __init__(self, user: str, keys: Path, allow_from: list[str], say: Log) -> None:
        self.user = user
        self.keys = keys
        self.networks = [ipaddress.ip_network(n, strict=False) for n in allow_from]
        self.say = say

    def allows(self, ip: str) -> bool:
        if not self.networks:
            return True
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.networks)

    def authorized_keys(self) -> asyncssh.SSHAuthorizedKeys | None:
        """Read on every login, so a key the operator adds works without a restart."""
        try:
            lines = self.keys.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            self.say(f"SFTP: no puedo leer {self.keys}: {exc.strerror}; nadie puede entrar")
            return None
        good = []
        for n, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                asyncssh.import_authorized_keys(line)
            except (asyncssh.KeyImportError, ValueError) as exc:
                self.say(f"SFTP: {self.keys}, línea {n}, no es una llave válida ({exc}); la ignoro")
                continue
            good.append(line)
        return asyncssh.import_authorized_keys("\n".join(good) + "\n") if good else None


class Connection(asyncssh.SSHServer):
    """One client connection: the address check, then public-key login for the one user."""

    def __init__(self, policy: Policy, desk: Desk) -> None:
        self.policy = policy
        self.desk = desk
        self.conn: asyncssh.SSHServerConnection | None = None
        self.peer = "?"
        self.refused = False
        self.authed = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.peer = str((conn.get_extra_info("peername") or ("?",))[0])
        if not self.policy.allows(self.peer):
            self.refused = True
            self.policy.say(f"SFTP: conexión rechazada de {self.peer}: fuera de sftp.allow_from")
            conn.abort()
            return
        self.desk.connections.add(conn)
        self.policy.say(f"SFTP: conexión de {self.peer}")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.desk.connections.discard(self.conn)
        if self.refused:
            return
        if self.authed:
            self.policy.say(f"SFTP: {self.peer} se desconectó")
        else:
            self.policy.say(f"SFTP: {self.peer} se fue sin autenticarse (llave no autorizada, "
                            "contraseña o usuario equivocado)")

    def begin_auth(self, username: str) -> bool:
        assert self.conn is not None
        keys = None
        if username == self.policy.user:
            keys = self.policy.authorized_keys()
        else:
            self.policy.say(f"SFTP: {self.peer} pidió el usuario «{username}»: rechazado")
        self.conn.set_authorized_keys(keys)  # type: ignore[arg-type]  # None: no key is valid
        return True

    def auth_completed(self) -> None:
        self.authed = True
        self.policy.say(f"SFTP: {self.policy.user} entró desde {self.peer}")

    def public_key_auth_supported(self) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False
