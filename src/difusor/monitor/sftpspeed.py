"""SFTP upload throughput, measured as the authority would see it (convocatoria II.1.d, ≥ 40 MB/s).

A test file of random bytes (so that compression cannot flatter the figure) is written to a
temporary folder, uploaded under a hidden temporary name into the receiver's check folder
(``/verificacion``: on OpenSSH a sibling of ``entrada/`` that nobody watches, on the embedded
server inside a scratch session) and removed there and here. Only the transfer is timed: the
connection and login come first, then the clock runs from the ``put`` until the server answers
the command after it.

The file goes up ``ROUNDS`` times in the same session and the median counts. One short upload is
at the mercy of any pause on a shared machine (a CI run once read 37 MB/s from a receiver that
does 150 and more); the median of three is not, and neither is it flattered by one lucky round.

OpenSSH's ``sftp`` does the upload when it is installed (what authorities use); asyncssh's client
otherwise. The server's host key is fetched first and pinned for the upload (and checked against
``known_fingerprint`` when given), so both connections met the same server. Downstream of
``receive``: nothing here imports it (the check key's path is the caller's business).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncssh

MB = 10**6  # the convocatoria's «MB/seg»: decimal megabytes (10⁶ bytes), not MiB
MIN_MB_PER_S = 40.0  # convocatoria II.1.d
CHECK_DIR = "/verificacion"  # receive.sftp.checkkey.CHECK_FOLDER, as the client names it
ROUNDS = 3
_CHUNK = 1 << 20


@dataclass(frozen=True)
class SpeedResult:
    """One measurement. ``ok``: the upload was measured *and* reached the minimum; a measured
    but slow upload has ``seconds > 0`` and ``ok`` False."""

    ok: bool
    bytes: int  # one round's upload
    seconds: float  # the median round's
    mb_per_s: float  # the median round's; MB = 10**6 bytes, the convocatoria's «MB/seg»
    host: str
    port: int
    user: str
    host_key: str  # SHA256:… fingerprint the server presented ("" if it was never reached)
    client: str  # which client measured: "OpenSSH sftp 9.2p1", "asyncssh 2.24.1"
    message: str  # Spanish, one line; on failure the reason
    minimum: float = MIN_MB_PER_S
    rounds: tuple[float, ...] = ()  # every round's MB/s, in order


class _Failed(Exception):
    """A measurement that could not be made; the message is the Spanish reason."""


def measure_upload(host: str, port: int, user: str, key: Path, size: int = 200 * MB, *,
                   remote_dir: str = CHECK_DIR, timeout: float = 120,
                   known_fingerprint: str | None = None, minimum: float = MIN_MB_PER_S,
                   client: str = "auto", rounds: int = ROUNDS) -> SpeedResult:
    """Upload ``size`` random bytes to ``remote_dir`` ``rounds`` times and take the median round.
    ``client``: "auto" (OpenSSH's ``sftp`` if installed, else asyncssh), "openssh" or
    "asyncssh". Never raises for a network, login or server failure: the result says why."""
    where = f"SFTP {_hostport(host, port)}"
    use_openssh = client == "openssh" or (client == "auto" and shutil.which("sftp") is not None)
    name = "OpenSSH sftp" if use_openssh else f"asyncssh {asyncssh.__version__}"
    fingerprint = ""

    def failed(why: str) -> SpeedResult:
        return SpeedResult(False, 0, 0.0, 0.0, host, port, user, fingerprint, name,
                           f"{where}: no se pudo medir: {why}", minimum)

    try:
        server_key = _server_key(host, port, min(timeout, 30))
        fingerprint = server_key.get_fingerprint()
        if known_fingerprint and _norm(known_fingerprint) != _norm(fingerprint):
            return failed(f"el servidor presentó la llave {fingerprint} y se esperaba "
                          f"{known_fingerprint}; no subí nada")
        stem = f"{remote_dir.rstrip('/') or '/'}/.difusor-velocidad-{uuid.uuid4().hex[:10]}"
        remotes = [f"{stem}-{n}.part" for n in range(1, max(1, rounds) + 1)]
        with tempfile.TemporaryDirectory(prefix="difusor-velocidad-") as work:
            local = _random_file(Path(work) / "prueba.bin", size)
            if use_openssh:
                name = _openssh_version()
                times = _openssh_upload(host, port, user, key, local, remotes, server_key,
                                        Path(work), timeout)
            else:
                times = asyncio.run(_asyncssh_upload(host, port, user, key, local, remotes,
                                                     fingerprint, timeout))
    except _Failed as exc:
        return failed(str(exc))
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        return failed(_reason(exc))
    seconds = statistics.median_low(times)  # a round that happened, not an average of two
    rate = size / MB / seconds if seconds > 0 else 0.0
    each = tuple(size / MB / t if t > 0 else 0.0 for t in times)
    ok = rate >= minimum
    figure = f"{size / MB:g} MB en {seconds:.2f} s = {rate:.1f} MB/s"
    if len(times) > 1:
        figure = (f"{size / MB:g} MB × {len(times)} subidas "
                  f"({', '.join(f'{r:.1f}' for r in each)} MB/s), mediana {seconds:.2f} s = "
                  f"{rate:.1f} MB/s")
    text = (f"{where}: {figure} (mínimo de la convocatoria: {minimum:g} MB/s) "
            f"{'✔' if ok else '✘'}")
    return SpeedResult(ok, size, seconds, rate, host, port, user, fingerprint, name, text, minimum,
                       each)


def auth_methods(host: str, port: int, user: str, timeout: float = 10) -> list[str]:
    """The authentication methods the server offers ``user`` (e.g. ``["publickey"]``)."""
    async def ask() -> list[str]:
        found = await asyncssh.get_server_auth_methods(host, port, user, config=[])
        return list(found)

    return asyncio.run(asyncio.wait_for(ask(), timeout))


# -- the pieces -------------------------------------------------------------------------------

def _server_key(host: str, port: int, timeout: float) -> asyncssh.SSHKey:
    async def fetch() -> asyncssh.SSHKey | None:
        return await asyncssh.get_server_host_key(host, port, config=[])

    key = asyncio.run(asyncio.wait_for(fetch(), timeout))
    if key is None:
        raise _Failed("el servidor no presentó llave de equipo")
    return key


def _random_file(path: Path, size: int) -> Path:
    """``size`` bytes that do not compress: a 1 MiB random block, each copy with its own counter
    in front (SSH's zlib window is 32 KiB, far shorter than the repetition)."""
    block = bytearray(os.urandom(_CHUNK))
    with path.open("wb") as f:
        left, n = size, 0
        while left > 0:
            block[:8] = n.to_bytes(8, "big")
            f.write(memoryview(block)[: min(left, _CHUNK)])
            left -= _CHUNK
            n += 1
    return path


def _openssh_upload(host: str, port: int, user: str, key: Path, local: Path, remotes: list[str],
                    server_key: asyncssh.SSHKey, work: Path, timeout: float) -> list[float]:
    """Each round's seconds: ``put`` to its own name, timed to the answer of the ``pwd`` after
    it, then ``rm`` (untimed), so one file at a time takes the receiver's disk."""
    known = work / "known_hosts"
    public = server_key.export_public_key("openssh").decode("ascii").split()[:2]
    known.write_text(f"{_hostport(host, port, brackets=True)} {' '.join(public)}\n")
    argv = ["sftp", "-b", "-", "-F", "/dev/null", "-i", str(key), "-P", str(port),
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", f"HostKeyAlgorithms={_algs(public[0])}",
            "-o", f"ConnectTimeout={max(1, int(min(timeout, 30)))}", "-o", "LogLevel=ERROR",
            f"{user}@{_bracket(host)}"]
    errors = work / "sftp.err"
    with errors.open("wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                text=True, bufsize=1)
    lines, reader = _lines(proc)
    deadline = time.monotonic() + timeout
    try:
        _send(proc, "pwd\n")  # answered once connected and logged in: the clock starts after
        _await_marker(lines, deadline, proc, errors)
        times = []
        for remote in remotes:
            started = time.perf_counter()
            _send(proc, f'put "{local}" "{remote}"\npwd\n')
            _await_marker(lines, deadline, proc, errors)
            times.append(time.perf_counter() - started)
            _send(proc, f'rm "{remote}"\npwd\n')  # gone before the next round's clock starts
            try:
                _await_marker(lines, deadline, proc, errors)
            except _Failed as exc:
                raise _Failed(f"no pude borrar {remote} en el servidor: {exc}") from None
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(max(5.0, deadline - time.monotonic()))
        return times
    except BaseException:
        _kill(proc)
        # A second session removes what the first may have left ("-": no error if it is gone).
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(argv, input="".join(f'-rm "{r}"\n' for r in remotes),
                           capture_output=True, text=True, timeout=30)
        raise
    finally:
        _kill(proc)
        reader.join(5)
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()


async def _asyncssh_upload(host: str, port: int, user: str, key: Path, local: Path,
                           remotes: list[str], fingerprint: str, timeout: float) -> list[float]:
    async def run() -> list[float]:
        async with asyncssh.connect(host, port, username=user, client_keys=[str(key)],
                                    known_hosts=None, agent_path=None, config=[],
                                    password=None, connect_timeout=min(timeout, 30)) as conn:
            seen = conn.get_server_host_key()
            if seen is None or seen.get_fingerprint() != fingerprint:
                raise _Failed("el servidor cambió de llave entre dos conexiones; no subí nada")
            async with conn.start_sftp_client() as sftp:
                times = []
                for remote in remotes:
                    started = time.perf_counter()
                    try:
                        await sftp.put(str(local), remote)
                        times.append(time.perf_counter() - started)
                    finally:
                        with contextlib.suppress(asyncssh.SFTPError):
                            await sftp.remove(remote)
                return times

    return await asyncio.wait_for(run(), timeout)


# -- helpers ----------------------------------------------------------------------------------

def _lines(proc: subprocess.Popen[str]
           ) -> tuple[queue.SimpleQueue[str | None], threading.Thread]:
    """sftp's stdout, line by line, from a thread (None at EOF)."""
    found: queue.SimpleQueue[str | None] = queue.SimpleQueue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            found.put(line)
        found.put(None)

    thread = threading.Thread(target=read, daemon=True, name="sftp-stdout")
    thread.start()
    return found, thread


def _await_marker(lines: queue.SimpleQueue[str | None], deadline: float,
                  proc: subprocess.Popen[str], errors: Path) -> None:
    """Wait for the answer to ``pwd``: every command before it is done."""
    while True:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise _Failed("se agotó el tiempo de espera") from None
        if line is None:
            proc.wait(5)
            raise _Failed(_stderr(errors) or f"sftp terminó con código {proc.returncode}")
        if line.startswith("Remote working directory:"):
            return


def _send(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(text)
        proc.stdin.flush()
    except BrokenPipeError:
        raise _Failed("sftp terminó antes de tiempo") from None


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def _stderr(errors: Path) -> str:
    try:
        text = errors.read_text("utf-8", "replace").strip()
    except OSError:
        return ""
    return " / ".join(line.strip() for line in text.splitlines()[-3:])


def _openssh_version() -> str:
    try:
        done = subprocess.run(["ssh", "-V"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "OpenSSH sftp"
    word = (done.stderr or done.stdout).split()[:1]
    return "OpenSSH sftp " + word[0].removeprefix("OpenSSH_").rstrip(",") if word else "OpenSSH sftp"


def _algs(key_type: str) -> str:
    """What to ask for so the server signs with the key we pinned (RSA keys sign with SHA-2)."""
    return "rsa-sha2-512,rsa-sha2-256,ssh-rsa" if key_type == "ssh-rsa" else key_type


def _norm(fingerprint: str) -> str:
    return fingerprint.strip().removeprefix("SHA256:").rstrip("=")


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _hostport(host: str, port: int, *, brackets: bool = False) -> str:
    if brackets:
        return _bracket(host) if port == 22 else f"[{host}]:{port}"
    return f"{_bracket(host)}:{port}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.PermissionDenied):
        return "el servidor rechazó la llave (¿falta la llave de verificación en el receptor?)"
    if isinstance(exc, TimeoutError):
        return "se agotó el tiempo de espera"
    if isinstance(exc, ConnectionRefusedError):
        return "conexión rechazada (¿puerto equivocado o servicio detenido?)"
    if isinstance(exc, asyncssh.Error):
        return exc.reason or type(exc).__name__
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
