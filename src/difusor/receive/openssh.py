"""OpenSSH as the production receiver: a hardened ``internal-sftp`` account for the authority.

The authority's upload account is confined by one ``Match User`` block: public keys only, no
shell, no forwarding, no TTY, ``internal-sftp`` forced and chrooted. The block goes into the
host's sshd (Debian includes ``/etc/ssh/sshd_config.d/*.conf`` at the top of ``sshd_config``; the
``Match`` ends with the included file). :func:`~difusor.receive.sshdconf.render_sshd_config`
wraps the same block in a standalone ``sshd_config`` for tests and benches.

The folder layout sshd insists on (measured, see ARCHITECTURE.md's field notes):

- every component of ``ChrootDirectory`` is root-owned and not group- or world-writable, so the
  chroot itself is ``root:root 0755`` and the authority writes into ``<chroot>/entrada``;
- ``entrada/`` is ``<user>:<group> 2770``, where ``<group>`` is the group the difusor runs as: the
  drop-folder watcher must be able to rename files *out* of it, and files created there inherit
  that group (setgid). ``internal-sftp -u 0007`` keeps the group bits the client asks for
  (OpenSSH's ``put`` asks for the local file's mode, usually ``0644`` → ``0640``) and drops every
  bit for others. (A ``-m`` to force a mode exists only in some distributions' builds: OpenSSH
  9.2's internal-sftp refuses it and the session closes at once.) A non-root difusor therefore
  reads the upload but does not own it: Linux's ``fs.protected_hardlinks`` may stop it from
  hard-linking the file it later takes from the inbox;
- ``AuthorizedKeysFile`` lives under ``/etc/ssh/difusor/`` (root-owned, ``0644``): with
  ``StrictModes`` its path must not cross a world-writable folder such as ``/tmp``, nor a folder
  owned by another account (the difusor's own folder, for example);
- the account's password field is ``*``: sshd refuses an account whose password is locked
  (``!``), even for key authentication, when PAM is off.

The throughput check logs in to the same account with the difusor's own key, listed with
``restrict`` in a second ``AuthorizedKeysFile``, and writes into ``<chroot>/verificacion``, beside
``entrada/``: never watched (why not a ``.part`` in ``entrada/``: ``receive/sftp/checkkey``).
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import stat
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from difusor.config import Config
from difusor.errors import DifusorError
from difusor.receive.sftp.checkkey import check_authorized_keys
from difusor.receive.sshdconf import (
    CHECK_FOLDER,
    DEFAULT_UMASK,
    UPLOAD_FOLDER,
    check_path,
    check_user,
    render_match_block,
    render_sshd_config,
)

DEFAULT_CHROOT = Path("/srv/difusor/sftp")
AUTHORIZED_KEYS_DIR = Path("/etc/ssh/difusor/authorized_keys")
SNIPPET_PATH = Path("/etc/ssh/sshd_config.d/difusor-sftp.conf")
NOLOGIN = "/usr/sbin/nologin"
_NOLOGIN_SHELLS = {"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"}


def upload_dir(chroot: Path) -> Path:
    """The folder the authority writes into, and the drop-folder watcher watches."""
    return Path(chroot) / UPLOAD_FOLDER


@dataclass(frozen=True)
class Step:
    """One command of the layout, with why it is needed (Spanish, for the operator)."""

    argv: tuple[str, ...]
    why: str

    @property
    def shell(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class SftpAccount:
    """The authority's OpenSSH upload account: its sshd block and the folders it needs."""

    user: str
    chroot: Path = DEFAULT_CHROOT
    group: str = "root"  # the group the difusor runs as: it takes files out of entrada/
    authorized_keys_source: Path | None = None  # the authority's keys, copied for sshd
    authorized_keys_file: Path | None = None  # default: AUTHORIZED_KEYS_DIR/<user>
    allow_from: tuple[str, ...] = ()
    umask: str = DEFAULT_UMASK
    inbox_dirs: tuple[Path, ...] = field(default=(), compare=False)  # should share a filesystem
    check_keys_source: Path | None = None  # the difusor's check key (restrict), copied for sshd
    check_keys_file: Path | None = None  # default: AUTHORIZED_KEYS_DIR/<user>.verificacion

    def __post_init__(self) -> None:
        check_user(self.user)
        check_path(self.chroot, "ChrootDirectory")

    @classmethod
    def from_config(cls, cfg: Config, *, chroot: Path | None = None) -> SftpAccount:
        """The account ``[sftp]`` describes; ``group`` is the group owning the difusor's folder."""
        folder = cfg.state_dir if cfg.state_dir.exists() else cfg.root
        try:
            group = grp.getgrgid(folder.stat().st_gid).gr_name
        except (KeyError, OSError):
            group = "root"
        try:
            check: Path | None = check_authorized_keys(cfg).resolve()
        except OSError:  # e.g. no state folder yet and none can be made: no throughput check
            check = None
        return cls(
            user=cfg.sftp.user,
            chroot=Path(chroot or DEFAULT_CHROOT),
            group=group,
            authorized_keys_source=cfg.path(cfg.sftp.authorized_keys).resolve(),
            allow_from=tuple(cfg.sftp.allow_from),
            inbox_dirs=(cfg.state_dir,),
            check_keys_source=check,
        )

    @property
    def upload_dir(self) -> Path:
        return upload_dir(self.chroot)

    @property
    def keys_file(self) -> Path:
        """What sshd reads (``AuthorizedKeysFile``)."""
        return self.authorized_keys_file or AUTHORIZED_KEYS_DIR / self.user

    @property
    def check_file(self) -> Path | None:
        """sshd's second ``AuthorizedKeysFile``, the check key's (None: no throughput check)."""
        if self.check_keys_source is None and self.check_keys_file is None:
            return None
        return self.check_keys_file or AUTHORIZED_KEYS_DIR / f"{self.user}.{CHECK_FOLDER}"

    @property
    def check_dir(self) -> Path:
        """Where the throughput check writes: beside ``entrada/``, never watched."""
        return Path(self.chroot) / CHECK_FOLDER

    def match_block(self) -> str:
        return render_match_block(user=self.user, chroot=self.chroot,
                                  authorized_keys_file=self.keys_file,
                                  allow_from=self.allow_from, umask=self.umask,
                                  check_keys_file=self.check_file)

    def sshd_config(self, *, port: int, listen: str, host_key: Path) -> str:
        return render_sshd_config(port=port, listen=listen, host_key=host_key, user=self.user,
                                  chroot=self.chroot, authorized_keys_file=self.keys_file,
                                  allow_from=self.allow_from, check_keys_file=self.check_file)

    def steps(self, *, create_user: bool = False) -> list[Step]:
        """The exact commands that prepare the account and its folders (idempotent)."""
        found: list[Step] = []
        if create_user:
            found.append(Step(
                ("useradd", "--system", "--no-create-home", "--home-dir", "/", "--shell", NOLOGIN,
                 "--user-group", self.user),
                f"cuenta dedicada {self.user}, sin shell ni carpeta personal",
            ))
        found += [
            Step(("usermod", "-p", "*", self.user),
                 "contraseña «*»: sshd rechaza una cuenta bloqueada («!») aun con llave"),
            Step(("install", "-d", "-o", "root", "-g", "root", "-m", "0755", str(self.chroot)),
                 "chroot de root y sin escritura para grupo u otros (exigencia de sshd)"),
            Step(("install", "-d", "-o", self.user, "-g", self.group, "-m", "2770",
                  str(self.upload_dir)),
                 f"carpeta de subida: escribe {self.user}; el grupo {self.group} (el difusor) "
                 "retira los paquetes"),
        ]
        if self.check_file is not None:
            found.append(Step(
                ("install", "-d", "-o", self.user, "-g", self.group, "-m", "2770",
                 str(self.check_dir)),
                "carpeta de la prueba de velocidad (difusor check): fuera de entrada/, nada de "
                "ahí se publica"))
        found += [
            Step(("install", "-d", "-o", "root", "-g", "root", "-m", "0755",
                  str(self.keys_file.parent)),
                 "carpeta de llaves fuera de carpetas con escritura pública (StrictModes)"),
        ]
        if self.authorized_keys_source is not None:
            found.append(Step(
                ("install", "-o", "root", "-g", "root", "-m", "0644",
                 str(self.authorized_keys_source), str(self.keys_file)),
                "llaves públicas de la autoridad, legibles por sshd (repítelo si cambian)",
            ))
        if self.check_keys_source is not None and self.check_file is not None:
            found.append(Step(
                ("install", "-o", "root", "-g", "root", "-m", "0644",
                 str(self.check_keys_source), str(self.check_file)),
                "llave de la prueba de velocidad del difusor (restrict: sin reenvíos ni terminal)",
            ))
        return found

    def problems(self) -> list[str]:
        """What would make sshd refuse the account or the chroot, as Spanish sentences."""
        found = [f"{p}: {why} (ChrootDirectory)" for p, why in _component_problems(self.chroot)]
        found += [f"{p}: {why} (la ruta de AuthorizedKeysFile no puede pasar por ahí)"
                  for p, why in _component_problems(self.keys_file.parent)]
        for keys in (self.authorized_keys_source, self.keys_file):
            if keys is not None and not _has_key(keys):
                found.append(f"{keys}: no contiene ninguna llave pública de la autoridad")
        for other in self.inbox_dirs:
            if self.upload_dir.exists() and other.exists() and (
                    self.upload_dir.stat().st_dev != other.stat().st_dev):
                found.append(f"{other} está en otro sistema de archivos que {self.upload_dir}: "
                             "cada paquete se copiará en vez de moverse (más lento)")
        return found

    def apply(self, *, create_user: bool = False,
              run: Callable[[Sequence[str]], subprocess.CompletedProcess[str]] | None = None,
              ) -> list[Step]:
        """Run :meth:`steps` as root; returns what ran. Refuses when not root, when the user is
        missing (unless ``create_user``), and when a folder above the chroot breaks sshd's rules."""
        if os.geteuid() != 0:
            raise DifusorError("--apply necesita root; o ejecuta a mano:\n" + "\n".join(
                s.shell for s in self.steps(create_user=create_user)))
        try:
            account = pwd.getpwnam(self.user)
        except KeyError:
            account = None
        if account is None and not create_user:
            raise DifusorError(f"no existe el usuario {self.user}; créalo con --create-user o con "
                               f"«useradd --system -M -d / -s {NOLOGIN} {self.user}»")
        if account is not None and account.pw_uid == 0:
            raise DifusorError(f"{self.user} es root: usa una cuenta dedicada para la autoridad")
        if account is not None and account.pw_shell not in _NOLOGIN_SHELLS:
            raise DifusorError(f"{self.user} tiene el shell {account.pw_shell}: usa una cuenta "
                               "dedicada, sin shell, para la autoridad")
        above = [f"{p}: {why}" for p, why in _component_problems(self.chroot.parent)]
        if above:
            raise DifusorError("el chroot no puede ir ahí: " + "; ".join(above))
        if self.authorized_keys_source is not None and not self.authorized_keys_source.is_file():
            raise DifusorError(f"no existe {self.authorized_keys_source} (llaves de la autoridad)")
        runner = run or _run
        todo = self.steps(create_user=create_user and account is None)
        for step in todo:
            result = runner(step.argv)
            if result.returncode != 0:
                raise DifusorError(f"falló «{step.shell}»: {(result.stderr or '').strip()}")
        left = [f"{p}: {why}" for p, why in _component_problems(self.chroot)]
        if left:  # e.g. parents install -d made under a umask of 0002
            raise DifusorError("sshd rechazaría el chroot: " + "; ".join(left))
        return todo

    def instructions(self, *, snippet: Path | None = None, applied: bool = False,
                     create_user: bool = False) -> str:
        """What the operator does next, in Spanish."""
        lines = ["Receptor de producción con OpenSSH (internal-sftp con chroot):", ""]
        if snippet is None:
            lines.append(f" 1. Guarda el bloque de arriba en {SNIPPET_PATH}")
        else:
            lines.append(f" 1. Bloque escrito en {snippet}")
        lines += [
            "    (Debian/Ubuntu incluyen /etc/ssh/sshd_config.d/*.conf desde /etc/ssh/sshd_config;",
            "    si el tuyo no tiene esa línea Include, pega el bloque al FINAL de sshd_config:",
            "    un bloque Match abarca hasta el siguiente Match o el fin del archivo).",
        ]
        if applied:
            lines.append(" 2. Cuenta y carpetas preparadas (--apply).")
        else:
            lines.append(" 2. Prepara la cuenta y las carpetas, como root (o «difusor sftp-config "
                         "--apply" + (" --create-user" if create_user else "") + "»):")
            for step in self.steps(create_user=create_user):
                lines += [f"      # {step.why}", f"      {step.shell}"]
        lines += [
            " 3. Revisa la configuración: «sshd -t» (sin salida = correcta) y la de la cuenta:",
            f"      sshd -T -C user={self.user},host=autoridad,addr=127.0.0.1 | grep -i "
            "-e chroot -e forcecommand",
            "    (un AllowGroups o DenyUsers global también se aplica a esta cuenta).",
            " 4. Recarga sshd sin cortar sesiones: «systemctl reload ssh» (en RHEL: sshd).",
            " 5. En difusor.toml, vigila la carpeta de subida:",
            "      [dropfolder]",
            f'      dirs = ["{self.upload_dir}"]',
            "    y, si ya no usarás el SFTP embebido, en [sftp]: enabled = false.",
            " 6. Acuerda con la autoridad cómo avisa que terminó: subir NOMBRE.part y renombrarlo",
            "    al final, o enviar NOMBRE.sha256 después del paquete. Un archivo que solo queda",
            "    con su nombre final no se publica: una transferencia cortada también lo deja así.",
            f"    Prueba: sftp -i LLAVE {self.user}@ESTE_SERVIDOR, luego «put X.zip X.zip.part» y",
            "    «rename X.zip.part X.zip».",
        ]
        if self.check_file is not None:
            lines += [
                " 7. La prueba de velocidad («difusor check», «difusor probe --sftp-speed») entra con",
                f"    la llave del difusor y sube a /{CHECK_FOLDER} (fuera de /{UPLOAD_FOLDER}): nada",
                "    de ahí se publica. Con allow_from, incluye la dirección desde donde se mide.",
            ]
        problems = self.problems()
        if problems:
            lines += ["", "Atención:"] + [f"  - {p}" for p in problems]
        return "\n".join(lines) + "\n"


def _has_key(path: Path) -> bool:
    """False only for a readable file without a single key line (missing or unreadable: True,
    the steps or sshd will say so)."""
    try:
        lines = path.read_text("utf-8", "replace").splitlines()
    except OSError:
        return True
    return any(line.strip() and not line.lstrip().startswith("#") for line in lines)


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise DifusorError(f"no encuentro el programa {argv[0]}") from None


def _component_problems(path: Path) -> list[tuple[Path, str]]:
    """Existing components of ``path`` (itself and its parents) that break sshd's chroot rules."""
    found = []
    for p in [Path(path), *Path(path).parents]:
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        if st.st_uid != 0:
            found.append((p, "no es de root"))
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            found.append((p, "su grupo u otros pueden escribir (p. ej. /tmp)"))
    return found
