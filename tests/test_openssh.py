"""OpenSSH as the production receiver: the rendered config, the layout, and a real sshd.

The real-sshd tests need root (a throwaway account, a chroot under /srv, sshd itself); they start
``sshd -D`` on a free loopback port with its own host key and clean everything up afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import pytest
from conftest import free_port, make_site
from test_dropfolder import dropfolder_toml, payload, wait_for, watching

from difusor.demo.election import SyntheticElection
from difusor.demo.packages import write_package
from difusor.errors import DifusorError
from difusor.publish.status import status
from difusor.receive import openssh
from difusor.receive.intake import original_name
from difusor.receive.openssh import SftpAccount
from difusor.receive.sshdconf import render_match_block, render_sshd_config

SSHD = "/usr/sbin/sshd"
TOOLS = ("sftp", "ssh", "ssh-keygen", "useradd", "usermod", "userdel", "install")


def directives(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            found.setdefault(key, value)
    return found


# -- rendering (no root needed) ---------------------------------------------------------------

def test_match_block_carries_every_hardening_directive() -> None:
    block = render_match_block(user="iem", chroot="/srv/difusor/sftp",
                               authorized_keys_file="/etc/ssh/difusor/authorized_keys/iem")
    d = directives(block)
    assert d["Match"] == "User iem"
    assert d["ChrootDirectory"] == "/srv/difusor/sftp"
    assert d["ForceCommand"].startswith("internal-sftp -u 0007 -d /entrada")
    assert d["AuthorizedKeysFile"] == "/etc/ssh/difusor/authorized_keys/iem"
    assert d["AllowUsers"] == "iem"
    expected = {
        "PasswordAuthentication": "no", "KbdInteractiveAuthentication": "no",
        "PubkeyAuthentication": "yes", "AuthenticationMethods": "publickey",
        "AllowTcpForwarding": "no", "AllowAgentForwarding": "no", "X11Forwarding": "no",
        "PermitTunnel": "no", "PermitTTY": "no", "AllowStreamLocalForwarding": "no",
        "DisableForwarding": "yes", "PermitUserRC": "no",
    }
    assert {k: d.get(k) for k in expected} == expected
    # Everything after "Match" is indented: it belongs to the block.
    after = block.split("Match User iem\n", 1)[1]
    assert all(line.startswith("    ") for line in after.splitlines())


def test_allow_from_becomes_allow_users_per_network() -> None:
    block = render_match_block(user="iem", chroot="/srv/x", authorized_keys_file="/etc/k",
                               allow_from=["200.23.8.7/24", "2001:db8::/32"])
    assert directives(block)["AllowUsers"] == "iem@200.23.8.0/24 iem@2001:db8::/32"


@pytest.mark.parametrize("kwargs", [
    {"user": "iem\nMatch all"},
    {"user": "Root"},
    {"chroot": "/srv/con espacio"},
    {"chroot": "relativa/sftp"},
    {"chroot": "/srv/%u"},
    {"chroot": "/srv/../tmp"},
    {"authorized_keys_file": "/etc/k\nPasswordAuthentication yes"},
    {"allow_from": ["no-es-red"]},
    {"umask": "22; rm"},
])
def test_values_that_would_break_or_inject_config_are_refused(kwargs: dict) -> None:
    args = {"user": "iem", "chroot": "/srv/x", "authorized_keys_file": "/etc/k", **kwargs}
    with pytest.raises(DifusorError):
        render_match_block(**args)


def test_standalone_config_serves_only_the_account() -> None:
    text = render_sshd_config(port=2299, listen="127.0.0.1", host_key="/srv/x/hostkey", user="iem",
                              chroot="/srv/x/sftp", authorized_keys_file="/srv/x/keys/iem",
                              allow_from=[])
    d = directives(text)
    assert d["Port"] == "2299" and d["ListenAddress"] == "127.0.0.1"
    assert d["PidFile"] == "none" and d["AllowUsers"] == "iem"
    assert d["PermitRootLogin"] == "no" and d["PasswordAuthentication"] == "no"
    assert text.index("AllowUsers iem\n") < text.index("Match User iem")


def test_steps_are_the_exact_commands() -> None:
    account = SftpAccount(user="iem", chroot=Path("/srv/difusor/sftp"), group="difusor",
                          authorized_keys_source=Path("/opt/difusor/keys/authorized_keys"))
    shells = [s.shell for s in account.steps(create_user=True)]
    assert shells == [
        "useradd --system --no-create-home --home-dir / --shell /usr/sbin/nologin --user-group iem",
        "usermod -p '*' iem",
        "install -d -o root -g root -m 0755 /srv/difusor/sftp",
        "install -d -o iem -g difusor -m 2770 /srv/difusor/sftp/entrada",
        "install -d -o root -g root -m 0755 /etc/ssh/difusor/authorized_keys",
        "install -o root -g root -m 0644 /opt/difusor/keys/authorized_keys "
        "/etc/ssh/difusor/authorized_keys/iem",
    ]
    assert not any("useradd" in s.shell for s in account.steps())
    assert account.upload_dir == Path("/srv/difusor/sftp/entrada")


def test_a_chroot_under_tmp_is_flagged_and_refused(tmp_path: Path, monkeypatch) -> None:
    account = SftpAccount(user="iem", chroot=Path("/tmp") / f"difusor-{uuid.uuid4().hex[:6]}")
    assert any("/tmp" in p and "escribir" in p for p in account.problems())
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    ran: list = []
    with pytest.raises(DifusorError, match="el chroot no puede ir ahí"):
        account.apply(create_user=True, run=ran.append)
    assert ran == []


def test_apply_needs_root_and_then_runs_each_step(monkeypatch) -> None:
    account = SftpAccount(user="dfnoexiste", chroot=Path("/srv/difusor-nunca/sftp"))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(DifusorError, match="necesita root") as info:
        account.apply()
    assert "install -d -o root -g root -m 0755 /srv/difusor-nunca/sftp" in info.value.message
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(DifusorError, match="--create-user"):
        account.apply()

    ran: list = []

    def runner(argv):
        ran.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, "", "")

    done = account.apply(create_user=True, run=runner)
    assert ran == [list(s.argv) for s in done] and ran[0][0] == "useradd"
    assert not Path("/srv/difusor-nunca").exists()


@pytest.mark.slow
def test_cli_prints_the_block_and_the_steps(tmp_path: Path) -> None:
    site = make_site(tmp_path / "d")
    site.ledger.close()
    r = subprocess.run([sys.executable, "-m", "difusor", "sftp-config", "--config",
                        str(site.config_path), "--chroot", "/srv/prep/sftp"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("# difusor: cuenta SFTP")
    assert "ChrootDirectory /srv/prep/sftp\n" in r.stdout
    assert 'dirs = ["/srv/prep/sftp/entrada"]' in r.stderr
    assert "sshd -t" in r.stderr and "usermod -p '*' iem" in r.stderr
    out = tmp_path / "difusor-sftp.conf"
    r = subprocess.run([sys.executable, "-m", "difusor", "sftp-config", "-c", str(site.config_path),
                        "--output", str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == ""
    assert "Match User iem" in out.read_text() and f"escrito en {out}" in r.stderr


def test_cli_apply_refuses_without_touching_anything(tmp_path: Path) -> None:
    site = make_site(tmp_path / "d")
    site.ledger.close()
    text = site.config_path.read_text().replace('user = "iem"', 'user = "dfnadie"')
    site.config_path.write_text(text)
    chroot = f"/srv/difusor-nunca-{uuid.uuid4().hex[:6]}/sftp"
    r = subprocess.run([sys.executable, "-m", "difusor", "sftp-config", "-c", str(site.config_path),
                        "--chroot", chroot, "--apply"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "necesita root" in r.stderr or "no existe el usuario dfnadie" in r.stderr
    assert not Path(chroot).parent.exists()


# -- a real sshd ------------------------------------------------------------------------------

def _cannot_run_sshd() -> str | None:
    if os.geteuid() != 0:
        return "hace falta root (cuenta desechable, chroot en /srv, sshd)"
    if not os.access(SSHD, os.X_OK):
        return f"no está {SSHD} (paquete openssh-server)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"faltan programas: {', '.join(missing)}"
    return None


@dataclass
class Sshd:
    base: Path
    client: Path
    user: str
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def account(self) -> SftpAccount:
        return SftpAccount(user=self.user, chroot=self.base / "sftp", group="root",
                           authorized_keys_source=self.client / "llave.pub",
                           authorized_keys_file=self.base / "keys" / self.user)

    @property
    def entrada(self) -> Path:
        return self.account.upload_dir

    @property
    def config(self) -> Path:
        return self.base / "sshd_config"

    @property
    def log(self) -> Path:
        return self.client / "sshd.log"

    def start(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
        self.base.mkdir(mode=0o755)
        os.chmod(self.base, 0o755)
        for name in ("llave", "otra"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                            str(self.client / name)], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(self.base / "host_key")], check=True)
        self.account.apply(create_user=True)
        self.account.apply()  # idempotent, and the account now exists
        self.port = free_port()
        self.config.write_text(self.account.sshd_config(port=self.port, listen="127.0.0.1",
                                                        host_key=self.base / "host_key"))
        check = subprocess.run([SSHD, "-t", "-f", str(self.config)], capture_output=True,
                               text=True)
        assert check.returncode == 0, check.stderr
        self.proc = self.launch(self.config, self.port, self.log)

    @staticmethod
    def launch(config: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
        """``sshd -D -e -f CONFIG``, once it greets on ``port``."""
        with log_path.open("wb") as log:
            proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sshd terminó: {log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return proc
            except OSError:
                pass
            if time.monotonic() > deadline:
                Sshd.halt(proc)
                raise RuntimeError(f"sshd no respondió: {log_path.read_text()}")
            time.sleep(0.05)

    @staticmethod
    def halt(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def cleanup(self) -> None:
        self.halt(self.proc)
        try:
            pwd.getpwnam(self.user)
        except KeyError:
            pass
        else:  # sessions of the throwaway account outlive the listener; end them first
            found = subprocess.run(["pgrep", "-u", self.user], capture_output=True, text=True)
            for pid in found.stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), 9)
            subprocess.run(["userdel", self.user], capture_output=True)
            if subprocess.run(["getent", "group", self.user], capture_output=True).returncode == 0:
                subprocess.run(["groupdel", self.user], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)

    def ssh_options(self, key: str = "llave") -> list[str]:
        return ["-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o",
                "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "IdentityAgent=none", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
                "-i", str(self.client / key)]

    def sftp_command(self, *extra: str, key: str = "llave") -> list[str]:
        return ["sftp", *self.ssh_options(key), "-P", str(self.port), *extra, "-b", "-",
                f"{self.user}@127.0.0.1"]

    def sftp(self, batch: str, *, key: str = "llave") -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.sftp_command(key=key), input=batch, capture_output=True,
                              text=True, timeout=60)

    def ssh(self, *args: str, key: str = "llave") -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ssh", *self.ssh_options(key), "-p", str(self.port), *args],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    reason = _cannot_run_sshd()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:8]
    env = Sshd(base=Path(f"/srv/difusor-test-{tag}"), client=tmp_path_factory.mktemp("cliente"),
               user=f"dft{tag}")
    try:
        env.start()
        yield env
    finally:
        env.cleanup()
    assert not env.base.exists()


@pytest.fixture
def receiving(sshd: Sshd, tmp_path: Path):
    """A difusor whose watcher watches the account's entrada/."""
    site = make_site(tmp_path / "difusor", dropfolder_toml(sshd.entrada))
    with watching(site.cfg) as w:
        yield site, w
    site.ledger.close()
    for leftover in sshd.entrada.iterdir():
        leftover.unlink()


def test_rendered_config_validates_and_applies_to_the_account(sshd: Sshd) -> None:
    check = subprocess.run([SSHD, "-t", "-f", str(sshd.config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr

    def effective(user: str) -> dict[str, str]:
        r = subprocess.run([SSHD, "-T", "-f", str(sshd.config), "-C",
                            f"user={user},host=autoridad,addr=127.0.0.1"],
                           capture_output=True, text=True, check=True)
        return dict(line.partition(" ")[::2] for line in r.stdout.splitlines())

    mine = effective(sshd.user)
    assert mine["chrootdirectory"] == str(sshd.base / "sftp")
    assert mine["forcecommand"].startswith("internal-sftp")
    assert mine["passwordauthentication"] == "no" and mine["permittty"] == "no"
    assert mine["authenticationmethods"] == "publickey"
    assert mine["allowtcpforwarding"] == "no" and mine["x11forwarding"] == "no"
    assert effective("otro")["chrootdirectory"] == "none"
    st = sshd.entrada.stat()
    assert (st.st_uid, oct(st.st_mode & 0o7777)) == (pwd.getpwnam(sshd.user).pw_uid, "0o2770")
    assert not sshd.account.problems()


@pytest.mark.slow
def test_upload_then_rename_is_delivered_byte_identical(sshd: Sshd, receiving, tmp_path: Path
                                                        ) -> None:
    _site, w = receiving
    local = tmp_path / "paquete.zip"
    local.write_bytes(payload(3_000_000, seed=20))
    r = sshd.sftp(f"put {local} 20241208_2100_PREP.zip.part\n"
                  "rename 20241208_2100_PREP.zip.part 20241208_2100_PREP.zip\n")
    assert r.returncode == 0, r.stderr
    got = w.next()
    assert got.read_bytes() == local.read_bytes()
    assert original_name(got.name) == "20241208_2100_PREP.zip"
    assert got.stat().st_mode & 0o007 == 0  # -u 0007: nothing for others
    w.none_within(1.0)
    assert list(sshd.entrada.iterdir()) == []


@pytest.mark.slow
def test_a_standard_sftp_rename_is_delivered_once(sshd: Sshd, receiving, tmp_path: Path) -> None:
    """paramiko (like WinSCP and asyncssh) sends the standard SSH_FXP_RENAME, which OpenSSH's
    sftp-server carries out as link + unlink: no inotify rename event, yet it is one."""
    import paramiko

    _site, w = receiving
    data = payload(1_500_000, seed=21)
    transport = paramiko.Transport(("127.0.0.1", sshd.port))
    transport.connect(username=sshd.user,
                      pkey=paramiko.Ed25519Key.from_private_key_file(str(sshd.client / "llave")))
    try:
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        with sftp.open("20241208_2110_PREP.zip.part", "wb") as f:
            f.write(data)
        sftp.rename("20241208_2110_PREP.zip.part", "20241208_2110_PREP.zip")
    finally:
        transport.close()
    got = w.next()
    assert got.read_bytes() == data
    assert original_name(got.name) == "20241208_2110_PREP.zip"
    w.none_within(1.0)


@pytest.mark.slow
def test_the_client_is_confined_to_the_chroot(sshd: Sshd) -> None:
    r = sshd.sftp("pwd\nls -1a /\ncd ../..\npwd\n")
    assert r.returncode == 0, r.stderr
    listing = [line.strip() for line in r.stdout.splitlines() if not line.startswith("sftp>")]
    assert "Remote working directory: /entrada" in listing
    assert [x for x in listing if x.startswith("/") and x not in ("/.", "/..")] == ["/entrada"]
    assert listing[-1] == "Remote working directory: /"
    stolen = sshd.sftp("get /etc/passwd " + str(sshd.client / "passwd") + "\n")
    assert stolen.returncode != 0 and "not found" in stolen.stderr
    assert not (sshd.client / "passwd").exists()
    outside = sshd.sftp("put /etc/hostname /escrito\n")
    assert outside.returncode != 0  # the chroot itself is root's


def test_wrong_key_and_passwords_are_refused(sshd: Sshd) -> None:
    r = sshd.sftp("ls\n", key="otra")
    assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr
    r = sshd.ssh("-o", "PubkeyAuthentication=no", "-o",
                 "PreferredAuthentications=password,keyboard-interactive",
                 f"{sshd.user}@127.0.0.1", "true")
    assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr  # only keys offered


@pytest.mark.slow
def test_allow_from_refuses_other_addresses(sshd: Sshd) -> None:
    """The same account, served by a second sshd that only admits it from 192.0.2.0/24."""
    account = SftpAccount(user=sshd.user, chroot=sshd.base / "sftp", group="root",
                          authorized_keys_file=sshd.base / "keys" / sshd.user,
                          allow_from=("192.0.2.0/24",))
    port = free_port()
    config = sshd.base / "sshd_config_allow_from"
    config.write_text(account.sshd_config(port=port, listen="127.0.0.1",
                                          host_key=sshd.base / "host_key"))
    proc = Sshd.launch(config, port, sshd.client / "sshd-allow-from.log")
    try:
        r = subprocess.run(["sftp", *sshd.ssh_options(), "-P", str(port), "-b", "-",
                            f"{sshd.user}@127.0.0.1"], input="pwd\n", capture_output=True,
                           text=True, timeout=60)
    finally:
        Sshd.halt(proc)
    assert r.returncode == 255 and "Permission denied" in r.stderr
    assert "not listed in AllowUsers" in (sshd.client / "sshd-allow-from.log").read_text()
    assert sshd.sftp("pwd\n").returncode == 0  # the address-free config still admits it


@pytest.mark.slow
def test_commands_tty_and_forwarding_are_refused(sshd: Sshd) -> None:
    r = sshd.ssh(f"{sshd.user}@127.0.0.1", "id")
    assert "uid=" not in r.stdout and r.returncode != 0
    r = sshd.ssh("-tt", f"{sshd.user}@127.0.0.1", "id")
    assert "uid=" not in r.stdout
    r = sshd.ssh("-W", f"127.0.0.1:{sshd.port}", f"{sshd.user}@127.0.0.1")
    assert r.returncode == 255 and "SSH-" not in r.stdout


@pytest.mark.slow
def test_a_transfer_killed_halfway_is_not_delivered(sshd: Sshd, receiving, tmp_path: Path
                                                    ) -> None:
    site, w = receiving
    local = tmp_path / "grande.zip"
    local.write_bytes(os.urandom(4_000_000))
    target = sshd.entrada / "20241208_2110_PREP.zip"
    proc = subprocess.Popen(sshd.sftp_command("-l", "2000"), stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdin is not None
        proc.stdin.write(f"put {local} {target.name}\n".encode())
        proc.stdin.close()
        wait_for(lambda: target.exists() and target.stat().st_size > 200_000, 20)
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: w.logged(f"{target.name} tiene su nombre final"), 10)  # closed by sshd
    w.none_within(2.0)
    assert 0 < target.stat().st_size < 4_000_000
    assert [a for a in site.state.inbox.iterdir()] == []


@pytest.mark.slow
def test_what_arrives_by_sftp_gets_published(sshd: Sshd, receiving, tmp_path: Path) -> None:
    site, w = receiving
    first, second = SyntheticElection(casillas=6).cortes(2)
    folder = tmp_path / "autoridad"
    full = write_package(first, folder, kind="full")
    r = sshd.sftp(f"put {full} {full.name}.part\nrename {full.name}.part {full.name}\n")
    assert r.returncode == 0, r.stderr
    got = w.next()
    before = site.publisher.publish(got, name=original_name(got.name), link=True)
    assert status(site.ledger, site.store, UTC)["corte"]["id"] == before.release_id
    # The next corte as a plain upload followed by its sidecar.
    inc = write_package(second, folder, kind="incremental", sidecar=True)
    r = sshd.sftp(f"put {inc} {inc.name}\nput {inc}.sha256 {inc.name}.sha256\n")
    assert r.returncode == 0, r.stderr
    package, side = w.next(), w.next()
    assert original_name(side.name) == inc.name + ".sha256"
    after = site.publisher.publish(package, name=original_name(package.name), sidecar=side,
                                   link=True)
    doc = status(site.ledger, site.store, UTC)
    assert after.status == "published" and doc["corte"]["id"] == after.release_id != before.release_id
    assert doc["corte"]["paquete_sha256"] == hashlib.sha256(inc.read_bytes()).hexdigest()


def test_module_defaults_point_outside_world_writable_folders() -> None:
    assert openssh.AUTHORIZED_KEYS_DIR.is_relative_to("/etc/ssh")
    assert openssh.DEFAULT_CHROOT.is_relative_to("/srv")
