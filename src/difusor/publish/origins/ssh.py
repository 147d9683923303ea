"""A remote nginx over SSH: rsync into ``root/releases/<id>``, then one remote atomic switch.

Staging is ``rsync -a --delete --link-dest=../../current``: files the live remote release already
has (same size, same mtime to the nanosecond: objects are written once) become hard links there,
so only what changed crosses the wire. Switching is a single ssh command, ``ln -s`` to a temp name
then ``mv -T`` over ``current`` (a rename: readers get the old corte or the new one). The command
is started at the end of staging and waits for one line on its standard input: switching is then
sending it the release id, which saves the ssh start-up (≈ 25 ms) inside the switch window. If
the run dies before, the command reads end-of-file and changes nothing.

One SSH connection is kept open between commands (OpenSSH ``ControlMaster``, socket in a private
folder, ``ControlPersist`` 5 minutes), so the switch costs a channel, not a handshake; if the
master is gone, ssh simply connects again.
"""

from __future__ import annotations

import contextlib
import functools
import re
import select
import shlex
import subprocess
import tempfile
from typing import Any

from difusor.config import SshOriginSettings
from difusor.paths import user_temp_folder
from difusor.publish.origins.base import RSYNC_FLAGS, Context, Origin, OriginError, Release

PERSIST_SECONDS = 300
CONNECT_SECONDS = 10  # a host that does not answer is not waited for longer
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]+$")


class SshOrigin(Origin):
    kind = "ssh"
    settings: SshOriginSettings

    def __init__(self, settings: SshOriginSettings, ctx: Context) -> None:
        super().__init__(settings, ctx)  # root, host and user were checked when loading
        self.root = settings.root.rstrip("/")
        self.destination = f"{settings.user}@{settings.host}" if settings.user else settings.host
        self._armed: tuple[str, subprocess.Popen[str]] | None = None
        self._exiting: list[subprocess.Popen[str]] = []  # switch commands that said «cambiado»

    @functools.cached_property
    def control(self) -> str | None:
        """The shared connection's socket (its folder is made on first use, not when built)."""
        folder = user_temp_folder("difusor-ssh")
        return f"{folder}/%C" if folder else None

    # -- ssh and rsync --------------------------------------------------------------------

    def options(self, *, master: bool = False) -> list[str]:
        s = self.settings
        opts = ["-p", str(s.port), "-o", "BatchMode=yes",
                "-o", f"ConnectTimeout={max(1, round(min(self.timeout, CONNECT_SECONDS)))}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if s.key:
            opts += ["-i", str(self.ctx.cfg.path(s.key)), "-o", "IdentitiesOnly=yes"]
        if s.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={self.ctx.cfg.path(s.known_hosts)}",
                     "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes"]
        if self.control:
            opts += ["-o", f"ControlPath={self.control}"]
            opts += (["-o", "ControlMaster=yes", "-o", f"ControlPersist={PERSIST_SECONDS}"]
                     if master else ["-o", "ControlMaster=no"])
        return opts

    def _connect(self) -> None:
        """Make sure the shared connection is up (start it if not)."""
        if not self.control:
            return
        check = subprocess.run(["ssh", *self.options(), "-O", "check", self.destination],
                               capture_output=True, timeout=self.timeout)
        if check.returncode == 0:
            return
        # -f: ssh goes to the background once authenticated. Its stderr goes to a file, not a
        # pipe: the background master keeps it open, and a pipe would never reach EOF.
        with tempfile.TemporaryFile() as err:
            done = subprocess.run(["ssh", *self.options(master=True), "-N", "-f",
                                   self.destination], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=err, timeout=self.timeout + 5)
            err.seek(0)
            message = err.read().decode(errors="replace").strip()
        if done.returncode != 0:
            raise OriginError(self._hint(message or f"ssh salió con {done.returncode}"))

    def run(self, command: str) -> str:
        done = subprocess.run(["ssh", *self.options(), self.destination, command],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=self.timeout)
        if done.returncode != 0:
            raise OriginError(self._hint(done.stderr.strip() or f"«{command}» salió con "
                                         f"{done.returncode}"))
        return done.stdout

    def _hint(self, message: str) -> str:
        where = f"{self.destination}:{self.settings.port}"
        text = f"origen {self.name} ({where}): {message[-300:]}"
        if "Permission denied" in message:
            text += " (¿la llave pública está en authorized_keys del usuario remoto?)"
        elif "Host key verification failed" in message or "REMOTE HOST IDENTIFICATION" in message:
            text += " (¿known_hosts tiene la llave actual del servidor?)"
        elif "Connection refused" in message or "timed out" in message:
            text += " (¿el servidor está encendido y sshd escucha en ese puerto?)"
        return text

    # -- the two phases -------------------------------------------------------------------

    def _stage(self, release: Release) -> dict[str, Any]:
        if not _SAFE_ID.match(release.id):
            raise OriginError(f"origen {self.name}: identificador de corte inválido {release.id}")
        self._connect()
        root = shlex.quote(self.root)
        self.run(f"mkdir -p {root}/releases")
        stats = self._rsync(release, [*RSYNC_FLAGS, "--link-dest=../../current"], "rsync")
        self._arm(release.id)
        return stats

    def _switch_command(self, release_id: str, *, armed: bool) -> str:
        """``ln -s`` to a temp name, ``mv -T`` over ``current``; armed, the link is made
        beforehand and only the rename waits for the go (end-of-file: the link is removed)."""
        rid = shlex.quote(release_id)
        tmp = shlex.quote(f".current.{release_id}.tmp")
        prepare = f"cd {shlex.quote(self.root)} && test -d releases/{rid} && " \
                  f"ln -sfn releases/{rid} {tmp}"
        if not armed:
            return f"{prepare} && mv -T {tmp} current && echo cambiado"
        return (f'{prepare} && {{ read -r go && [ "$go" = {rid} ] && mv -T {tmp} current && '
                f"echo cambiado || {{ rm -f {tmp}; exit 1; }}; }}")

    def _arm(self, release_id: str) -> None:
        """Start the switch command now; it waits for the go (see the module docstring)."""
        self._disarm()
        proc = subprocess.Popen(
            ["ssh", *self.options(), self.destination,
             self._switch_command(release_id, armed=True)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._armed = (release_id, proc)

    def _disarm(self) -> None:
        for proc in self._exiting:
            _reap(proc)
        self._exiting = []
        if self._armed is not None:
            _, proc = self._armed
            self._armed = None
            _reap(proc)  # its standard input closes: the command reads end-of-file, gives up

    def _switch(self, release_id: str) -> dict[str, Any]:
        armed, self._armed = self._armed, None
        if armed is not None and armed[0] == release_id and armed[1].poll() is None:
            proc = armed[1]
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(release_id + "\n")
                proc.stdin.close()
                # Done when the remote says so; the ssh client's own exit is not waited for.
                ready, _, _ = select.select([proc.stdout], [], [], self.timeout)
                line = proc.stdout.readline() if ready else ""
            except OSError:
                line = ""
            if line.strip() == "cambiado":
                self._exiting.append(proc)
                return {"armed": True}
            if not ready:
                proc.kill()
            err = _reap(proc)
            raise OriginError(self._hint(err.strip() or "el cambio no respondió a tiempo"
                                         if not ready else f"el cambio salió con "
                                         f"{proc.returncode}: {err.strip()}"))
        if armed is not None:
            self._armed = armed
            self._disarm()
        self.run(self._switch_command(release_id, armed=False))
        return {"armed": False}

    def live(self) -> str | None:
        target = self.run(f"readlink {shlex.quote(self.root)}/current || true").strip()
        return target.rstrip("/").rsplit("/", 1)[-1] if target else None

    def add_variants(self, release: Release) -> dict[str, Any]:
        """rsync only the variants into the live release (each lands by rename, whole)."""
        return self._rsync(release, ["-a", "--ignore-existing", "--include=*/", "--include=*.gz",
                                     "--include=*.br", "--exclude=*"], "rsync de variantes")

    def _rsync(self, release: Release, options: list[str], what: str) -> dict[str, Any]:
        """rsync the release's tree into ``root/releases/<id>`` over the shared connection."""
        cmd = ["rsync", *options, "--stats", f"--timeout={max(1, round(self.timeout))}",
               "-e", shlex.join(["ssh", *self.options()]), f"{release.tree}/",
               f"{self.destination}:{self.root}/releases/{release.id}/"]
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=self.timeout * 4)
        if done.returncode != 0:
            raise OriginError(self._hint(f"{what} salió con {done.returncode}: "
                                         f"{done.stderr.strip()}"))
        return _stats(done.stdout)

    def prune(self, keep: set[str]) -> int:
        names = " ".join(k for k in sorted(keep) if _SAFE_ID.match(k))
        out = self.run(
            f"cd {shlex.quote(self.root)}/releases 2>/dev/null || exit 0; "
            'live=$(basename "$(readlink ../current)"); for d in *; do '
            '[ -d "$d" ] || continue; [ "$d" = "$live" ] && continue; '
            f'case " {names} " in *" $d "*) continue;; esac; rm -rf -- "$d" && echo "$d"; done')
        return len(out.split())

    def close(self) -> None:
        self._disarm()
        if self.__dict__.get("control"):  # a shared connection can only exist once used
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(["ssh", *self.options(), "-O", "exit", self.destination],
                               capture_output=True, timeout=10)


def _reap(proc: subprocess.Popen[str], timeout: float = 5.0) -> str:
    """Close a command's input, wait for it (killing it if it lingers); returns its stderr."""
    with contextlib.suppress(OSError):
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    err = proc.stderr.read() if proc.stderr else ""
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()
    return err


def _stats(text: str) -> dict[str, Any]:
    """The numbers of ``rsync --stats`` worth recording."""
    wanted = {"Number of regular files transferred": "files_sent",
              "Total transferred file size": "bytes_sent", "Number of files": "files"}
    found: dict[str, Any] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in wanted:
            digits = re.match(r"[\d,]+", value.strip())
            if digits:
                found[wanted[key.strip()]] = int(digits.group().replace(",", ""))
    return found
