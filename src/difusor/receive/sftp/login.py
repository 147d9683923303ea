"""Who may connect to the SFTP receiver: the address check, then public-key login for one user.

Besides ``authorized_keys``, the difusor's own check key (``checkkey``) logs in as the same
user; its sessions are scratch sessions (``scratch``). Which key authenticated is told by an
authorized_keys option only the check key's entry carries, with a value fresh for each listener
(so no line of ``authorized_keys`` can claim it): asyncssh keeps the options of the entry that
validated the signature, ``conn.get_key_option``.
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path

import asyncssh

from difusor.receive.sftp.uploads import Desk, Log

CHECK_OPTION = "difusor-verificacion"


class Policy:
    def __init__(self, user: str, keys: Path, allow_from: list[str], say: Log,
                 check_pub: Path | None = None) -> None:
        self.user = user
        self.keys = keys
        self.networks = [ipaddress.ip_network(n, strict=False) for n in allow_from]
        self.say = say
        self.check_pub = check_pub
        self.check_token = secrets.token_hex(16)

    def allows(self, ip: str) -> bool:
        if not self.networks:
            return True
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.networks)

    def authorized_keys(self) -> asyncssh.SSHAuthorizedKeys | None:
        """Read on every login, so a key the operator adds works without a restart. The check
        key goes first: asyncssh takes the first entry that matches, so that key is always the
        check's, even if someone also lists it in ``authorized_keys``."""
        good = []
        check = self.check_line()
        if check is not None:
            good.append(check)
        try:
            lines = self.keys.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            self.say(f"SFTP: no puedo leer {self.keys}: {exc.strerror}; la autoridad no puede entrar")
            lines = []
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

    def check_line(self) -> str | None:
        """The check key as an authorized_keys entry marked with this listener's token."""
        if self.check_pub is None:
            return None
        try:
            key = asyncssh.import_public_key(self.check_pub.read_bytes())
        except FileNotFoundError:
            return None  # no check run yet: the pair is made on demand
        except (OSError, asyncssh.KeyImportError, ValueError) as exc:
            self.say(f"SFTP: no puedo leer la llave de la prueba de velocidad {self.check_pub} "
                     f"({exc}); la ignoro")
            return None
        public = " ".join(key.export_public_key("openssh").decode("ascii").split()[:2])
        return f'restrict,{CHECK_OPTION}="{self.check_token}" {public}'

    def is_check(self, conn: asyncssh.SSHServerConnection) -> bool:
        return conn.get_key_option(CHECK_OPTION) == [self.check_token]


class Connection(asyncssh.SSHServer):
    """One client connection: the address check, then public-key login for the one user."""

    def __init__(self, policy: Policy, desk: Desk) -> None:
        self.policy = policy
        self.desk = desk
        self.conn: asyncssh.SSHServerConnection | None = None
        self.peer = "?"
        self.refused = False
        self.authed = False
        self.asked = False  # a login was attempted (begin_auth)
        self.scratch = False  # authenticated with the check key: a scratch session

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
        elif not self.asked:
            # ssh-keyscan, the throughput check reading the host key, a port scanner: nobody
            # tried to log in, so no key or password was wrong.
            self.policy.say(f"SFTP: {self.peer} se desconectó sin intentar entrar (solo pidió la "
                            "llave del servidor o probó el puerto)")
        else:
            self.policy.say(f"SFTP: {self.peer} se fue sin autenticarse (llave no autorizada, "
                            "contraseña o usuario equivocado)")

    def begin_auth(self, username: str) -> bool:
        assert self.conn is not None
        self.asked = True
        keys = None
        if username == self.policy.user:
            keys = self.policy.authorized_keys()
        else:
            self.policy.say(f"SFTP: {self.peer} pidió el usuario «{username}»: rechazado")
        self.conn.set_authorized_keys(keys)  # type: ignore[arg-type]  # None: no key is valid
        return True

    def auth_completed(self) -> None:
        assert self.conn is not None
        self.authed = True
        self.scratch = self.policy.is_check(self.conn)
        if self.scratch:
            self.policy.say(f"SFTP: {self.policy.user} entró desde {self.peer} con la llave de la "
                            "prueba de velocidad: escribe en una carpeta de prueba, nada se "
                            "publica")
        else:
            self.policy.say(f"SFTP: {self.policy.user} entró desde {self.peer}")

    def public_key_auth_supported(self) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False
