"""The sshd configuration of the authority's upload account: the ``Match User`` block that
confines it, and a standalone ``sshd_config`` around the same block for tests and benches.

Every value is checked before it is written: sshd_config words have no quoting that would keep
a space, a ``#`` or a ``%`` token from changing what the line means.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path

from difusor.errors import DifusorError

UPLOAD_FOLDER = "entrada"
CHECK_FOLDER = "verificacion"  # beside entrada/: the throughput check's uploads, never watched
DEFAULT_UMASK = "0007"

_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
# sshd_config words: no whitespace, quotes, comments or tokens (ChrootDirectory expands %u, %h).
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./+-]*$")
_UMASK = re.compile(r"^0?[0-7]{3}$")


def render_match_block(
    *,
    user: str,
    chroot: Path | str,
    authorized_keys_file: Path | str,
    allow_from: Iterable[str] = (),
    umask: str = DEFAULT_UMASK,
    check_keys_file: Path | str | None = None,
) -> str:
    """The ``Match User`` block that confines the authority's upload account. ``check_keys_file``
    (the difusor's throughput-check key) becomes a second ``AuthorizedKeysFile``."""
    user = check_user(user)
    root = check_path(chroot, "ChrootDirectory")
    keys = check_path(authorized_keys_file, "AuthorizedKeysFile")
    if check_keys_file is not None:
        keys += " " + check_path(check_keys_file, "AuthorizedKeysFile")
    if not _UMASK.match(umask):
        raise DifusorError(f"umask «{umask}» inválida (p. ej. 0007)")
    allowed = " ".join(f"{user}@{net}" for net in _networks(allow_from)) or user
    return (
        f"# difusor: cuenta SFTP de la autoridad ({user}). Generado por «difusor sftp-config».\n"
        f"# Solo llaves públicas, solo SFTP, encerrada en {root}; sube a /{UPLOAD_FOLDER}.\n"
        f"Match User {user}\n"
        f"    AllowUsers {allowed}\n"
        f"    ChrootDirectory {root}\n"
        f"    ForceCommand internal-sftp -u {umask} -d /{UPLOAD_FOLDER} -l INFO\n"
        f"    AuthorizedKeysFile {keys}\n"
        "    AuthenticationMethods publickey\n"
        "    PubkeyAuthentication yes\n"
        "    PasswordAuthentication no\n"
        "    KbdInteractiveAuthentication no\n"
        "    HostbasedAuthentication no\n"
        "    PermitEmptyPasswords no\n"
        "    DisableForwarding yes\n"
        "    AllowTcpForwarding no\n"
        "    AllowAgentForwarding no\n"
        "    AllowStreamLocalForwarding no\n"
        "    X11Forwarding no\n"
        "    PermitTunnel no\n"
        "    PermitListen none\n"
        "    PermitOpen none\n"
        "    GatewayPorts no\n"
        "    PermitTTY no\n"
        "    PermitUserRC no\n"
        "    ClientAliveInterval 30\n"
        "    ClientAliveCountMax 4\n"
    )


def render_sshd_config(
    *,
    port: int,
    listen: str,
    host_key: Path | str,
    user: str,
    chroot: Path | str,
    authorized_keys_file: Path | str,
    allow_from: Iterable[str] = (),
    check_keys_file: Path | str | None = None,
) -> str:
    """A standalone ``sshd_config`` that serves only the upload account (tests, benches).

    Run it with ``sshd -D -e -f FILE`` as root; it writes no pid file."""
    if not 1 <= int(port) <= 65535:
        raise DifusorError(f"el puerto {port} está fuera de 1–65535")
    try:
        ipaddress.ip_address(listen)
    except ValueError:
        raise DifusorError(f"ListenAddress «{listen}» no es una IP") from None
    key = check_path(host_key, "HostKey")
    block = render_match_block(user=user, chroot=chroot, authorized_keys_file=authorized_keys_file,
                               allow_from=allow_from, check_keys_file=check_keys_file)
    return (
        "# sshd_config autónomo generado por difusor: solo la cuenta SFTP de la autoridad.\n"
        f"Port {int(port)}\n"
        f"ListenAddress {listen}\n"
        f"HostKey {key}\n"
        "PidFile none\n"
        "UsePAM no\n"
        "StrictModes yes\n"
        "PermitRootLogin no\n"
        "AuthorizedKeysFile none\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "AuthenticationMethods publickey\n"
        "DisableForwarding yes\n"
        "X11Forwarding no\n"
        "PermitTTY no\n"
        "PrintMotd no\n"
        "LoginGraceTime 30\n"
        "MaxAuthTries 3\n"
        "LogLevel VERBOSE\n"
        "Subsystem sftp internal-sftp\n"
        f"AllowUsers {check_user(user)}\n"
        "\n" + block
    )


def check_user(user: str) -> str:
    if not _USER.match(user):
        raise DifusorError(f"«{user}» no es un nombre de usuario válido para sshd "
                           "(minúsculas, dígitos, _ . -)")
    return user


def check_path(path: Path | str, what: str) -> str:
    text = str(path)
    if not _SAFE_PATH.match(text) or "/../" in text + "/":
        raise DifusorError(f"{what}: «{text}» debe ser una ruta absoluta sin espacios, comillas "
                           "ni «%» (p. ej. /srv/difusor/sftp)")
    return text


def _networks(items: Iterable[str]) -> list[str]:
    nets = []
    for item in items:
        try:
            nets.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise DifusorError(f"«{item}» no es una red CIDR (p. ej. 200.23.8.0/24)") from None
    return nets
