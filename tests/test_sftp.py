"""The embedded SFTP receiver, driven by real clients (OpenSSH's sftp and ssh, paramiko).

Every test starts the real server on a free loopback port in a background event loop and stops
it afterwards. What is asserted is what the authority and the operator would notice: what lands
in the inbox (byte for byte, how many times), what a client is refused, what it can see.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest
from conftest import Site, free_port

from difusor.demo.election import SyntheticElection
from difusor.demo.packages import write_package
from difusor.receive.inbox import arrivals
from difusor.receive.sftp import clean_abandoned, start_sftp_server

pytestmark = pytest.mark.skipif(
    not (shutil.which("sftp") and shutil.which("ssh") and shutil.which("ssh-keygen")),
    reason="faltan los clientes de OpenSSH (sftp, ssh, ssh-keygen)",
)
USER = "iem"


# -- the server, in a background event loop ----------------------------------------------------

class Receiver:
    """``start_sftp_server`` running in its own thread; records deliveries and log lines."""

    def __init__(self, site: Site, **sftp: object) -> None:
        self.port = free_port()
        self.cfg = site.cfg.model_copy(
            update={"sftp": site.cfg.sftp.model_copy(update={"listen": f"127.0.0.1:{self.port}",
                                                             **sftp})})
        self.uploads = site.state.uploads
        self.inbox = site.state.inbox
        self.delivered: list[Path] = []
        self.logs: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.listener = self._call(start_sftp_server(
            self.cfg, on_delivered=self.delivered.append, log=self.logs.append))

    def _call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self) -> None:
        async def down() -> None:
            self.listener.close()
            await self.listener.wait_closed()

        try:
            self._call(down())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.run_until_complete(_cancel_leftovers())
            self.loop.close()

    def said(self, text: str) -> bool:
        return any(text in line for line in list(self.logs))


async def _cancel_leftovers() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def wait_for(check: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"no ocurrió a tiempo: {what}")


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """The authority's key pair and a stranger's; the authority's is authorized."""
    folder = tmp_path / "client-keys"
    folder.mkdir()
    found = {}
    for who in ("autoridad", "extrano"):
        key = folder / who
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", who, "-f", str(key)],
                       check=True, capture_output=True)
        found[who] = key
    return found


@pytest.fixture
def receiver(site: Site, keys: dict[str, Path]) -> Iterator[Receiver]:
    authorized = site.cfg.path(site.cfg.sftp.authorized_keys)
    authorized.write_text(keys["autoridad"].with_suffix(".pub").read_text())
    r = Receiver(site)
    yield r
    r.stop()


# -- clients -------------------------------------------------------------------------------------

def ssh_options(key: Path) -> list[str]:
    return ["-i", str(key), "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "LogLevel=ERROR"]


def sftp_argv(r: Receiver, key: Path, batch: Path, *extra: str) -> list[str]:
    return ["sftp", "-b", str(batch), *ssh_options(key), *extra, "-P", str(r.port),
            f"{USER}@127.0.0.1"]


def sftp(r: Receiver, key: Path, commands: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    batch = cwd / f"batch-{time.monotonic_ns()}.txt"
    batch.write_text(commands)
    return subprocess.run(sftp_argv(r, key, batch), capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def connect(r: Receiver, key: Path) -> paramiko.Transport:
    sock = socket.create_connection(("127.0.0.1", r.port), timeout=10)
    t = paramiko.Transport(sock)
    t.start_client(timeout=10)
    t.auth_publickey(USER, paramiko.Ed25519Key.from_private_key_file(str(key)))
    return t


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def big_file(path: Path, megabytes: int) -> Path:
    block = os.urandom(1 << 20)
    with path.open("wb") as f:
        for n in range(megabytes):
            f.write(n.to_bytes(8, "big") + block[8:])
    return path


def authority_package(folder: Path) -> Path:
    corte = next(SyntheticElection().cortes(1))
    return write_package(corte, folder, sidecar=True)


# -- delivering ----------------------------------------------------------------------------------

def test_openssh_upload_arrives_in_the_inbox_once_and_intact(receiver: Receiver,
                                                             keys: dict[str, Path],
                                                             tmp_path: Path) -> None:
    pkg = authority_package(tmp_path / "paquetes")
    side = Path(str(pkg) + ".sha256")
    done = sftp(receiver, keys["autoridad"], f"put {pkg.name}\nput {side.name}\nls -l\n", pkg.parent)
    assert done.returncode == 0, done.stderr
    assert pkg.name in done.stdout  # the client still sees its file after the upload

    wait_for(lambda: len(arrivals(receiver.inbox)) == 2, what="paquete y .sha256 en el buzón")
    time.sleep(0.3)  # nothing else trickles in afterwards
    got = {a.name: a.path for a in arrivals(receiver.inbox)}
    assert set(got) == {pkg.name, side.name}
    assert sha(got[pkg.name]) == sha(pkg)
    assert got[side.name].read_text() == side.read_text()
    assert sorted(p.name for p in receiver.delivered) == sorted(a.path.name for a in
                                                                 arrivals(receiver.inbox))
    assert receiver.said(f"recibido /{pkg.name} ({pkg.stat().st_size:,} bytes)")
    host_key = receiver.cfg.path(receiver.cfg.sftp.host_key)
    assert host_key.stat().st_mode & 0o777 == 0o600  # generated on first start


def test_paramiko_upload_is_delivered_intact(receiver: Receiver, keys: dict[str, Path],
                                             tmp_path: Path) -> None:
    local = big_file(tmp_path / "20241208_2030_PREP.zip", 3)
    t = connect(receiver, keys["autoridad"])
    try:
        client = paramiko.SFTPClient.from_transport(t)
        assert client is not None
        client.put(str(local), "20241208_2030_PREP.zip")  # put() stats the file after closing it
        client.close()
    finally:
        t.close()
    wait_for(lambda: len(arrivals(receiver.inbox)) == 1, what="entrega")
    [arrival] = arrivals(receiver.inbox)
    assert arrival.name == local.name and sha(arrival.path) == sha(local)


@pytest.mark.slow
def test_temporary_name_is_delivered_only_when_renamed(receiver: Receiver, keys: dict[str, Path],
                                                       tmp_path: Path) -> None:
    local = big_file(tmp_path / "X.zip", 2)
    done = sftp(receiver, keys["autoridad"], "put X.zip X.zip.part\n", tmp_path)
    assert done.returncode == 0, done.stderr
    time.sleep(0.5)
    assert arrivals(receiver.inbox) == []  # a closed .part is not an upload yet

    done = sftp(receiver, keys["autoridad"], "rename X.zip.part X.zip\n", tmp_path)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: len(arrivals(receiver.inbox)) == 1, what="entrega al renombrar")
    time.sleep(0.3)
    [arrival] = arrivals(receiver.inbox)
    assert arrival.name == "X.zip" and sha(arrival.path) == sha(local)
    assert len(receiver.delivered) == 1


def test_reupload_leaves_the_earlier_delivery_untouched(receiver: Receiver, keys: dict[str, Path],
                                                        tmp_path: Path) -> None:
    first = tmp_path / "uno" / "PREP.zip"
    second = tmp_path / "dos" / "PREP.zip"
    for path, text in ((first, b"primer corte " * 5000), (second, b"segundo")):
        path.parent.mkdir()
        path.write_bytes(text)
    for path in (first, second):
        done = sftp(receiver, keys["autoridad"], "put PREP.zip\n", path.parent)
        assert done.returncode == 0, done.stderr
        wait_for(lambda path=path: sha(path) in {sha(a.path) for a in arrivals(receiver.inbox)},
                 what=f"entrega de {path}")
    a, b = arrivals(receiver.inbox)
    assert sha(a.path) == sha(first) and sha(b.path) == sha(second)
    assert (receiver.uploads / "PREP.zip").read_bytes() == second.read_bytes()



def test_a_name_sent_again_after_a_simulacro_replaces_the_delivered_one(
        receiver: Receiver, keys: dict[str, Path]) -> None:
    """SFTP v3's rename refuses an existing name; the night re-sends the simulacro's file names."""
    t = connect(receiver, keys["autoridad"])
    try:
        client = paramiko.SFTPClient.from_transport(t)
        for text in (b"simulacro", b"jornada"):
            with client.open("20241208_2000_PREP.zip.part", "wb") as f:
                f.write(text)
            client.rename("20241208_2000_PREP.zip.part", "20241208_2000_PREP.zip")
            wait_for(lambda text=text: text in {a.path.read_bytes()
                                                for a in arrivals(receiver.inbox)},
                     what=f"entrega de {text!r}")
        with client.open("abierto.zip", "wb") as open_one, \
                client.open("otro.zip.part", "wb") as other:
            open_one.write(b"a medias")
            other.write(b"x")
            other.close()
            with pytest.raises(OSError):  # a file still being written is never replaced
                client.rename("otro.zip.part", "abierto.zip")
        client.close()
    finally:
        t.close()
    delivered = {a.path.read_bytes() for a in arrivals(receiver.inbox)}
    assert {b"simulacro", b"jornada"} <= delivered and b"x" not in delivered
    assert (receiver.uploads / "abierto.zip").read_bytes() == b"a medias"


# -- interrupted transfers ---------------------------------------------------------------------

@pytest.mark.slow
def test_killed_openssh_transfer_delivers_nothing(receiver: Receiver, keys: dict[str, Path],
                                                  tmp_path: Path) -> None:
    big_file(tmp_path / "GRANDE.zip", 200)
    batch = tmp_path / "batch.txt"
    batch.write_text("put GRANDE.zip\n")
    # -l: 80 Mbit/s, so the transfer is surely under way, and far from done, when it is killed.
    proc = subprocess.Popen(sftp_argv(receiver, keys["autoridad"], batch, "-l", "80000"),
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    partial = receiver.uploads / "GRANDE.zip"
    try:
        wait_for(lambda: partial.exists() and partial.stat().st_size > 8 << 20, what="subida en curso")
        # Only sftp dies: its ssh sees EOF and closes the channel in good order — the
        # treacherous case, since nothing at the SSH level looks like an error.
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: receiver.said("subida incompleta de /GRANDE.zip"), what="aviso")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the ssh child, if it is still there
    time.sleep(0.3)
    assert arrivals(receiver.inbox) == [] and receiver.delivered == []
    assert 0 < partial.stat().st_size < 200 << 20

    assert clean_abandoned(receiver.uploads, 3600) == []  # too recent to be abandoned
    assert clean_abandoned(receiver.uploads, 0) == [partial]
    assert not partial.exists()


def _raw_session(receiver: Receiver, keys: dict[str, Path]
                 ) -> tuple[socket.socket, paramiko.Transport, paramiko.SFTPClient]:
    """An SFTP session over a socket the test holds, so it can pull the network away."""
    sock = socket.create_connection(("127.0.0.1", receiver.port), timeout=10)
    t = paramiko.Transport(sock)
    t.start_client(timeout=10)
    t.auth_publickey(USER, paramiko.Ed25519Key.from_private_key_file(str(keys["autoridad"])))
    client = paramiko.SFTPClient.from_transport(t)
    assert client is not None
    return sock, t, client


@pytest.mark.slow
def test_dropped_paramiko_connection_delivers_nothing(receiver: Receiver, keys: dict[str, Path]
                                                      ) -> None:
    sock, t, client = _raw_session(receiver, keys)
    f = client.open("CORTADO.zip", "wb")
    for _ in range(8):
        f.write(b"x" * 65536)
    f.flush()
    sock.shutdown(socket.SHUT_RDWR)  # the network goes away with the file open
    sock.close()
    t.close()
    wait_for(lambda: receiver.said("subida incompleta de /CORTADO.zip"), what="aviso")
    time.sleep(0.3)
    assert arrivals(receiver.inbox) == [] and receiver.delivered == []
    assert clean_abandoned(receiver.uploads, 0) == [receiver.uploads / "CORTADO.zip"]


def test_renaming_an_interrupted_temporary_upload_delivers_nothing(receiver: Receiver,
                                                                   keys: dict[str, Path]) -> None:
    sock, t, client = _raw_session(receiver, keys)
    f = client.open("Y.zip.part", "wb")
    f.write(b"y" * 100_000)
    f.flush()
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    t.close()
    wait_for(lambda: receiver.said("subida incompleta de /Y.zip.part"), what="aviso")

    t = connect(receiver, keys["autoridad"])
    try:
        client = paramiko.SFTPClient.from_transport(t)
        assert client is not None
        client.posix_rename("Y.zip.part", "Y.zip")  # as if it were complete: it is not
        client.close()
    finally:
        t.close()
    wait_for(lambda: receiver.said("/Y.zip no se terminó de subir"), what="aviso")
    assert arrivals(receiver.inbox) == [] and receiver.delivered == []


def test_client_cannot_alter_a_delivered_file(receiver: Receiver, keys: dict[str, Path]) -> None:
    t = connect(receiver, keys["autoridad"])
    try:
        client = paramiko.SFTPClient.from_transport(t)
        assert client is not None
        with client.open("PREP.zip", "wb") as f:
            f.write(b"entregado")
        wait_for(lambda: len(arrivals(receiver.inbox)) == 1, what="entrega")
        [arrival] = arrivals(receiver.inbox)
        mode = arrival.path.stat().st_mode
        with pytest.raises(PermissionError):
            client.truncate("PREP.zip", 0)
        with pytest.raises(PermissionError):
            client.open("PREP.zip", "r+")  # writing in place, without truncating first
        client.chmod("PREP.zip", 0)
        client.utime("PREP.zip", (1_000_000_000, 1_000_000_000))  # times are the client's own
        assert client.stat("PREP.zip").st_size == len(b"entregado")
        client.close()
    finally:
        t.close()
    assert arrival.path.read_bytes() == b"entregado" and arrival.path.stat().st_mode == mode


# -- who gets in, and what they can do ---------------------------------------------------------

def test_stranger_key_is_refused(receiver: Receiver, keys: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "X.zip").write_bytes(b"no")
    done = sftp(receiver, keys["extrano"], "put X.zip\n", tmp_path)
    assert done.returncode != 0
    assert "Permission denied (publickey)" in done.stderr
    assert list(receiver.uploads.iterdir()) == [] and arrivals(receiver.inbox) == []


def test_key_added_later_works_without_restart(receiver: Receiver, keys: dict[str, Path],
                                               site: Site, tmp_path: Path) -> None:
    (tmp_path / "X.zip").write_bytes(b"si")
    assert sftp(receiver, keys["extrano"], "put X.zip\n", tmp_path).returncode != 0
    authorized = site.cfg.path(site.cfg.sftp.authorized_keys)
    with authorized.open("a") as f:
        f.write("esta línea no es una llave\n" + keys["extrano"].with_suffix(".pub").read_text())
    done = sftp(receiver, keys["extrano"], "put X.zip\n", tmp_path)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: len(arrivals(receiver.inbox)) == 1, what="entrega")
    assert receiver.said("línea 2, no es una llave válida")


def test_password_and_other_users_are_refused(receiver: Receiver, keys: dict[str, Path]) -> None:
    # One connection per attempt: paramiko asks for the auth service again on each call, which
    # asyncssh (rightly) answers by disconnecting.
    t = paramiko.Transport(("127.0.0.1", receiver.port))
    try:
        t.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType) as info:
            t.auth_password(USER, "contraseña")
        assert info.value.allowed_types == ["publickey"]
        assert not t.is_authenticated()
    finally:
        t.close()
    t = paramiko.Transport(("127.0.0.1", receiver.port))
    try:
        t.start_client(timeout=10)
        with pytest.raises(paramiko.AuthenticationException):
            t.auth_publickey("root", paramiko.Ed25519Key.from_private_key_file(
                str(keys["autoridad"])))
        assert not t.is_authenticated()
    finally:
        t.close()
    wait_for(lambda: receiver.said("pidió el usuario «root»: rechazado"), what="aviso")


def test_commands_and_shells_are_refused(receiver: Receiver, keys: dict[str, Path],
                                         tmp_path: Path) -> None:
    flag = tmp_path / "ejecutado"
    base = ["ssh", *ssh_options(keys["autoridad"]), "-p", str(receiver.port), f"{USER}@127.0.0.1"]
    done = subprocess.run([*base, f"touch {flag}"], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    assert done.returncode != 0 and not flag.exists()
    done = subprocess.run([*base[:-1], "-tt", base[-1]], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)  # an interactive shell
    assert done.returncode != 0
    done = subprocess.run([*base[:-1], "-s", base[-1], "netconf"], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)  # any other subsystem
    assert done.returncode != 0


@pytest.mark.slow
def test_port_forwarding_is_refused(receiver: Receiver, keys: dict[str, Path]) -> None:
    target = socket.socket()
    target.bind(("127.0.0.1", 0))
    target.listen()
    target.settimeout(0.5)
    t = connect(receiver, keys["autoridad"])
    try:
        with pytest.raises(paramiko.ChannelException):
            t.open_channel("direct-tcpip", target.getsockname(), ("127.0.0.1", 40000))
        with pytest.raises(paramiko.SSHException):
            t.request_port_forward("127.0.0.1", 0)
        with pytest.raises(TimeoutError):
            target.accept()  # nothing ever reached the target
    finally:
        t.close()
        target.close()
    done = subprocess.run(
        ["ssh", *ssh_options(keys["autoridad"]), "-N", "-o", "ExitOnForwardFailure=yes",
         "-R", "0:127.0.0.1:9", "-p", str(receiver.port), f"{USER}@127.0.0.1"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode != 0


def test_allow_from_refuses_other_networks(site: Site, keys: dict[str, Path], tmp_path: Path
                                          ) -> None:
    site.cfg.path(site.cfg.sftp.authorized_keys).write_text(
        keys["autoridad"].with_suffix(".pub").read_text())
    r = Receiver(site, allow_from=["200.23.8.0/24"])
    try:
        (tmp_path / "X.zip").write_bytes(b"x")
        done = sftp(r, keys["autoridad"], "put X.zip\n", tmp_path)
        assert done.returncode != 0
        assert r.said("conexión rechazada de 127.0.0.1: fuera de sftp.allow_from")
        assert not r.said("entró desde")
        assert list(r.uploads.iterdir()) == []
    finally:
        r.stop()
    r = Receiver(site, allow_from=["127.0.0.0/8"])
    try:
        assert sftp(r, keys["autoridad"], "put X.zip\n", tmp_path).returncode == 0
    finally:
        r.stop()


def test_client_is_confined_to_the_uploads_folder(receiver: Receiver, keys: dict[str, Path],
                                                  site: Site, tmp_path: Path) -> None:
    assert site.state.ledger.exists()
    (tmp_path / "propio.zip").write_bytes(b"mio")
    assert sftp(receiver, keys["autoridad"], "put propio.zip\n", tmp_path).returncode == 0
    done = sftp(receiver, keys["autoridad"],
                "pwd\nls -1a /\nls -1a ..\n-get ../../ledger.sqlite robado\n-get /etc/passwd robado\n"
                "-symlink /etc/passwd enlace\n", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Remote working directory: /\n" in done.stdout
    listed = [line.strip() for line in done.stdout.splitlines()
              if line.startswith(("/", "../"))]
    # Both "/" and ".." are the uploads folder: its own file, nothing of the state folder.
    assert {p.rsplit("/", 1)[1] for p in listed} == {".", "..", "propio.zip"}
    assert not (tmp_path / "robado").exists()
    assert not (receiver.uploads / "enlace").exists()

    t = connect(receiver, keys["autoridad"])
    try:
        client = paramiko.SFTPClient.from_transport(t)
        assert client is not None
        assert sorted(client.listdir("/../..")) == ["propio.zip"]
        with pytest.raises(FileNotFoundError):
            client.open("../../ledger.sqlite")
        client.close()
    finally:
        t.close()
