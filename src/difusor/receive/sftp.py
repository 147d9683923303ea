"""The embedded SFTP receiver: the authority uploads here; only complete files reach the inbox.

One asyncssh listener, public-key login for one user (``[sftp] user``, keys re-read from
``authorized_keys`` on every connection), the sftp subsystem and nothing else, chrooted to
``state/sftp``. An upload becomes a candidate for the inbox in exactly two ways:

* the client closes a file it opened for writing, every write having succeeded, and the name has
  no temporary suffix (``[receive] temp_suffixes``); or
* the client renames a temporary name (``X.zip.part``) whose file it closed cleanly to a final
  name (``X.zip``).

A candidate is hard-linked into the inbox (:func:`difusor.receive.inbox.deliver`), so the client
can still stat or list its file. Opening an existing name with truncation unlinks it first, so a
re-upload is a new inode and never touches a file already in the inbox.

**Connection loss is not a close.** When a session ends (EOF — which is also what a killed
OpenSSH ``sftp`` produces, since its ``ssh`` sends EOF — or a dropped TCP connection), asyncssh's
``SFTPServerHandler._cleanup`` calls ``SFTPServer.close()`` for every handle still open and then
``SFTPServer.exit()``, synchronously, in one go. A close therefore only *settles* as clean once the
session shows it goes on: the next request arrives, or the event loop gets a turn; ``exit()``
arriving first means the close was the cleanup path, and nothing is delivered. (A client that
sends EOF without waiting for its close reply can lose a delivery this way; none of the usual
clients do.)
"""

from __future__ import annotations

import asyncio
import copy
import io
import ipaddress
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh

from difusor.config import Config, parse_address
from difusor.errors import ConfigError, DifusorError
from difusor.paths import StateLayout
from difusor.receive.inbox import deliver

Log = Callable[[str], None]
_Key = tuple[int, int]  # (st_dev, st_ino): the file itself, whatever its name
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
    desk = _Desk(layout.uploads, layout.inbox, cfg.receive.temp_suffixes, on_delivered, say)
    gate = _Policy(cfg.sftp.user, cfg.path(cfg.sftp.authorized_keys), cfg.sftp.allow_from, say)
    host, port = parse_address(cfg.sftp.listen)
    try:
        acceptor = await asyncssh.listen(
            host, port,
            server_host_keys=[_host_key(cfg.path(cfg.sftp.host_key), say)],
            server_factory=lambda: _Connection(gate, desk),
            sftp_factory=lambda chan: _Uploads(chan, desk),
            sftp_version=3, allow_scp=False, allow_pty=False, line_editor=False,
            agent_forwarding=False, x11_forwarding=False,
            login_timeout=60, keepalive_interval=30, keepalive_count_max=4,
            window=8 * 1024 * 1024, encryption_algs=CIPHERS,
        )
    except OSError as exc:
        raise DifusorError(f"SFTP: no puedo escuchar en {cfg.sftp.listen}: {exc.strerror}") from None
    return _Listener(acceptor, desk)


def clean_abandoned(uploads: Path, older_than: float) -> list[Path]:
    """Remove files under ``uploads`` untouched for ``older_than`` seconds: uploads already linked
    into the inbox and partial transfers nobody finished. "Untouched" is the later of mtime and
    ctime, since a client may set mtime to its own file's age (``put -p``)."""
    cutoff = time.time() - older_than
    removed = []
    for folder, _dirs, files in os.walk(uploads):
        for name in files:
            path = Path(folder, name)
            try:
                st = os.lstat(path)
                if max(st.st_mtime, st.st_ctime) < cutoff:
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:
                continue
    return removed


def _host_key(path: Path, say: Log) -> asyncssh.SSHKey:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = asyncssh.generate_private_key("ssh-ed25519")
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.export_private_key())
        os.replace(tmp, path)
        say(f"SFTP: generé la llave del servidor {path} "
            f"({key.convert_to_public().get_fingerprint()})")
    try:
        return asyncssh.read_private_key(path)
    except (OSError, asyncssh.KeyImportError) as exc:
        raise ConfigError(f"sftp.host_key: no puedo leer la llave {path}: {exc}") from None


# -- who may connect ---------------------------------------------------------------------------

class _Policy:
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


class _Connection(asyncssh.SSHServer):
    """One client connection: the address check, then public-key login for the one user."""

    def __init__(self, policy: _Policy, desk: _Desk) -> None:
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


class _Listener(asyncssh.SSHAcceptor):
    """asyncssh's listener, except that closing it also ends the sessions it accepted."""

    def __init__(self, acceptor: asyncssh.SSHAcceptor, desk: _Desk) -> None:
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


# -- what becomes of an upload -----------------------------------------------------------------

class _Handle(io.FileIO):
    """An open file; for writing, with what the completion rule needs to know."""

    local: bytes
    key: _Key
    writing: bool = False
    failed: bool = False


class _Desk:
    """Shared by every session of one listener: which files are open for writing, which
    temporary names were closed cleanly, and the delivery itself."""

    def __init__(self, uploads: Path, inbox: Path, temp_suffixes: list[str],
                 on_delivered: Callable[[Path], None] | None, say: Log) -> None:
        self.uploads = uploads.resolve()
        self.inbox = inbox
        self.temp_suffixes = tuple(s.lower() for s in temp_suffixes)
        self.on_delivered = on_delivered
        self.say = say
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self._writers: dict[_Key, int] = {}
        self._tainted: set[_Key] = set()
        self._ready: set[_Key] = set()  # temporary names closed cleanly, waiting for their rename

    def is_temp(self, local: bytes) -> bool:
        return os.fsdecode(local).lower().endswith(self.temp_suffixes)

    def shown(self, local: bytes) -> str:
        return "/" + os.path.relpath(os.fsdecode(local), self.uploads)

    def opened(self, h: _Handle) -> None:
        self._writers[h.key] = self._writers.get(h.key, 0) + 1
        self._ready.discard(h.key)

    def closed(self, h: _Handle, clean: bool) -> None:
        left = self._writers.get(h.key, 1) - 1
        if left:
            self._writers[h.key] = left
        else:
            self._writers.pop(h.key, None)
        if not clean or h.failed:
            self._tainted.add(h.key)
            why = "falló una escritura" if h.failed else "la sesión terminó con el archivo abierto"
            self.say(f"SFTP: subida incompleta de {self.shown(h.local)} ({why}): no se entrega")
        if left:
            return  # another handle still writes this file: its last close decides
        if h.key in self._tainted:
            self._tainted.discard(h.key)
        elif self.is_temp(h.local):
            self._ready.add(h.key)
        else:
            self.hand_over(h.local, h.key)

    def renamed(self, old: bytes, new: bytes, key: _Key) -> None:
        if not self.is_temp(old) or self.is_temp(new):
            return
        if key in self._ready:
            self._ready.discard(key)
            self.hand_over(new, key)
        elif key in self._writers:
            self.say(f"SFTP: {self.shown(new)} se renombró aún abierto para escritura: no se entrega")
        else:
            self.say(f"SFTP: {self.shown(new)} no se terminó de subir en esta sesión: no se entrega")

    def hand_over(self, local: bytes, key: _Key) -> None:
        path = Path(os.fsdecode(local))
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != key or not stat.S_ISREG(st.st_mode):
            self.say(f"SFTP: {self.shown(local)} cambió antes de entregarse: no se entrega")
            return
        try:
            target = deliver(path, self.inbox, name=path.name, link=True)
        except OSError as exc:  # e.g. the inbox on another filesystem: say so, keep the upload
            self.say(f"SFTP: no pude pasar {self.shown(local)} al buzón {self.inbox}: {exc}")
            return
        self.say(f"SFTP: recibido {self.shown(local)} ({st.st_size:,} bytes) → buzón")
        if self.on_delivered is not None:
            try:
                self.on_delivered(target)
            except Exception as exc:  # the upload is delivered; a listener's bug must not undo it
                self.say(f"SFTP: error al avisar de {target.name}: {exc!r}")


class _Uploads(asyncssh.SFTPServer):
    """One sftp session in the chroot. Closes wait in ``_pending`` until they settle (see the
    module docstring): every other request settles them as clean first; ``exit()`` as not."""

    def __init__(self, chan: asyncssh.SSHServerChannel, desk: _Desk) -> None:
        super().__init__(chan, chroot=os.fsencode(desk.uploads))
        self.desk = desk
        self._pending: list[_Handle] = []

    def _settle(self) -> None:
        pending, self._pending = self._pending, []
        for h in pending:
            self.desk.closed(h, clean=True)

    def exit(self) -> None:
        pending, self._pending = self._pending, []
        for h in pending:
            self.desk.closed(h, clean=False)

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> _Handle:
        self._settle()
        local = self.map_path(path)
        writing = bool(pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_APPEND))
        flags = os.O_NOFOLLOW | os.O_CLOEXEC
        if not writing:
            return _Handle(os.open(local, flags | os.O_RDONLY), "rb")
        flags |= os.O_RDWR if pflags & asyncssh.FXF_READ else os.O_WRONLY
        if pflags & asyncssh.FXF_APPEND:
            flags |= os.O_APPEND
        if pflags & asyncssh.FXF_CREAT:
            flags |= os.O_CREAT
        try:
            old = os.lstat(local)
        except FileNotFoundError:
            old = None
        if pflags & asyncssh.FXF_EXCL:
            flags |= os.O_EXCL
        elif old is not None and stat.S_ISREG(old.st_mode):
            if pflags & asyncssh.FXF_TRUNC:  # a new inode: the inbox keeps the earlier upload
                os.unlink(local)
                flags |= os.O_CREAT | os.O_EXCL
            elif old.st_nlink > 1:
                raise asyncssh.SFTPPermissionDenied(
                    "ya se entregó este archivo; súbelo de nuevo completo")
        perms = 0o644 if attrs.permissions is None else (attrs.permissions & 0o777) | 0o600
        fd = os.open(local, flags, perms)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise asyncssh.SFTPPermissionDenied("solo se suben archivos regulares")
        h = _Handle(fd, "r+b" if pflags & asyncssh.FXF_READ else "wb")
        h.local, h.key, h.writing = local, (st.st_dev, st.st_ino), True
        self.desk.opened(h)
        return h

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        h: _Handle = file_obj  # type: ignore[assignment]
        try:
            done = os.pwrite(h.fileno(), data, offset)
            while done < len(data):  # short writes are rare on files, but not impossible
                done += os.pwrite(h.fileno(), memoryview(data)[done:], offset + done)
        except OSError:
            h.failed = True
            raise
        return done

    def close(self, file_obj: object) -> None:
        h: _Handle = file_obj  # type: ignore[assignment]
        h.close()
        if h.writing:
            if not self._pending:
                asyncio.get_running_loop().call_soon(self._settle)
            self._pending.append(h)

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._moved(oldpath, newpath, super().rename)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._moved(oldpath, newpath, super().posix_rename)

    def _moved(self, oldpath: bytes, newpath: bytes, move: Callable[[bytes, bytes], Any]) -> None:
        self._settle()
        old = os.lstat(self.map_path(oldpath))
        move(oldpath, newpath)
        if stat.S_ISREG(old.st_mode):
            self.desk.renamed(self.map_path(oldpath), self.map_path(newpath),
                              (old.st_dev, old.st_ino))

    def remove(self, path: bytes) -> None:
        self._settle()
        super().remove(path)

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._settle()
        super().setstat(path, self._allowed(attrs, os.stat(self.map_path(path))))

    def lsetstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._settle()
        super().lsetstat(path, self._allowed(attrs, os.lstat(self.map_path(path))))

    def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        self._settle()
        h: _Handle = file_obj  # type: ignore[assignment]
        super().fsetstat(h, self._allowed(attrs, os.fstat(h.fileno())))

    @staticmethod
    def _allowed(attrs: asyncssh.SFTPAttrs, st: os.stat_result) -> asyncssh.SFTPAttrs:
        """Times and (own) permissions, yes; owners never; and a file already in the inbox
        (more than one link) is neither truncated nor made unreadable."""
        attrs = copy.copy(attrs)
        attrs.uid = attrs.gid = attrs.owner = attrs.group = None
        if st.st_nlink > 1:
            if attrs.size is not None and attrs.size != st.st_size:
                raise asyncssh.SFTPPermissionDenied("ya se entregó este archivo; no se trunca")
            attrs.size = attrs.permissions = None
        elif attrs.permissions is not None:
            attrs.permissions = (attrs.permissions & 0o777) | 0o600
        return attrs

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("no se permiten enlaces aquí")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("no se permiten enlaces aquí")
