"""Upload throughput: the embedded SFTP receiver against OpenSSH's sshd with ``internal-sftp``.

    python bench/sftp_throughput.py [--quick] [--size MB] [--rounds N]

One random file (500 MB; ``--quick``: 20 MB, one round) is uploaded with OpenSSH's ``sftp``
client, its defaults untouched, to (a) ``start_sftp_server`` running alone in its own process,
exactly as ``difusor run`` configures it, and (b) ``sshd -D`` with ``ForceCommand internal-sftp``
in a chroot, started here on other loopback ports (root only: it needs a system user and a
root-owned chroot under /srv; both are removed afterwards) — once with sshd's default ciphers
(``openssh``: the client picks chacha20-poly1305) and once offering the receiver's AES list
(``openssh_aes``: like for like; the headline ratio). They take turns each round. The clock
covers the whole ``sftp`` run, handshake included. Each upload is checked byte for byte (sha256)
— for the receiver, the copy delivered to its inbox. MB = 10^6 bytes.

Targets: the receiver's median ≥ 100 MB/s and no round below 40 MB/s.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness import BenchError, Child, free_port, guard, machine_load, print_load, wait_ssh
from results import table, write_result

from difusor.receive.sftp import CIPHERS

NAME = "sftp_throughput"
TARGET_MBPS = 100.0
FLOOR_MBPS = 40.0
USER = "iem"
MB = 1_000_000


@dataclass
class Run:
    server: str
    round: int
    seconds: float
    mbps: float
    sha256_ok: bool


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 MB, 1 round (smoke test)")
    ap.add_argument("--size", type=int, help="MB per upload (default 500, quick 20)")
    ap.add_argument("--rounds", type=int, help="rounds per server (default 3, quick 1)")
    ap.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)  # the receiver's process
    args = ap.parse_args(argv)
    args.size = args.size or (20 if args.quick else 500)
    args.rounds = max(1, args.rounds or (1 if args.quick else 3))
    return args


# -- the embedded receiver, alone in its process -----------------------------------------------

def serve(config: Path) -> int:
    from difusor import config as config_mod
    from difusor.receive.sftp import start_sftp_server

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        listener = await start_sftp_server(config_mod.load(config), log=lambda m: print(m, flush=True))
        await stop.wait()
        listener.close()
        await listener.wait_closed()

    asyncio.run(main())
    return 0


def start_receiver(root: Path, key: Path) -> tuple[Child, int, Path]:
    from difusor import config as config_mod
    from difusor.paths import StateLayout

    port = free_port()
    (root / "keys").mkdir(parents=True)
    (root / "keys" / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    cfg_path = root / "difusor.toml"
    cfg_path.write_text(config_mod.render_default(web_listen=f"127.0.0.1:{free_port()}",
                                                  sftp_listen=f"127.0.0.1:{port}"))
    inbox = StateLayout(config_mod.load(cfg_path).state_dir).inbox
    child = Child("difusor sftp", [sys.executable, __file__, "--serve", str(cfg_path)],
                  root / "receiver.out")
    wait_ssh(child, port)
    return child, port, inbox


# -- the anchor: sshd + internal-sftp in a chroot ----------------------------------------------

class OpenSSH:
    """Throwaway sshds: their own user, a root-owned chroot under /srv, config and keys beside it.

    Two instances share the user and the chroot: ``openssh`` with sshd's default ciphers (the
    OpenSSH client then picks chacha20-poly1305) and ``openssh_aes`` offering the receiver's
    cipher list, so one comparison is like for like and the other is against a stock sshd."""

    def __init__(self, key: Path, ciphers: list[str]) -> None:
        self.user = f"dfbench{uuid.uuid4().hex[:6]}"
        self.base = Path(tempfile.mkdtemp(prefix="difusor-bench-", dir="/srv"))
        self.ports: dict[str, int] = {}
        self.children: list[Child] = []
        self.created_user = False
        try:
            self._setup(key, ciphers)
        except BaseException:
            self.close()
            raise

    @property
    def upload_dir(self) -> Path:
        return self.base / "root" / "upload"

    def _setup(self, key: Path, ciphers: list[str]) -> None:
        base = self.base
        base.chmod(0o755)
        subprocess.run(["useradd", "--no-create-home", "--home-dir", "/upload", "--shell",
                        "/usr/sbin/nologin", self.user], check=True, capture_output=True)
        self.created_user = True
        # A locked password ("!") makes sshd refuse the account even for keys: "*" is not locked.
        subprocess.run(["usermod", "-p", "*", self.user], check=True, capture_output=True)
        etc, root = base / "etc", base / "root"
        etc.mkdir(mode=0o755)
        root.mkdir(mode=0o755)
        self.upload_dir.mkdir()
        pw = pwd.getpwnam(self.user)
        os.chown(self.upload_dir, pw.pw_uid, pw.pw_gid)
        shutil.copy(key.with_suffix(".pub"), etc / "authorized_keys")
        (etc / "authorized_keys").chmod(0o644)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(etc / "host_key")],
                       check=True, capture_output=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
        for name, extra in (("openssh", ""), ("openssh_aes", f"Ciphers {','.join(ciphers)}\n")):
            port = free_port()
            conf = etc / f"sshd_config.{name}"
            conf.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {etc / "host_key"}
PidFile none
AuthorizedKeysFile {etc / "authorized_keys"}
AllowUsers {self.user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
AllowTcpForwarding no
X11Forwarding no
Subsystem sftp internal-sftp
ForceCommand internal-sftp
ChrootDirectory {root}
LogLevel ERROR
{extra}""")
            check = subprocess.run(["/usr/sbin/sshd", "-t", "-f", str(conf)], capture_output=True,
                                   text=True, timeout=20)
            if check.returncode != 0:
                raise BenchError(f"sshd -t refused the configuration:\n{check.stderr}")
            child = Child(f"sshd ({name})", ["/usr/sbin/sshd", "-D", "-e", "-f", str(conf)],
                          etc / f"sshd.{name}.out")
            self.children.append(child)
            wait_ssh(child, port)
            self.ports[name] = port

    def close(self) -> None:
        for child in self.children:
            child.stop()
        if self.created_user:
            subprocess.run(["userdel", self.user], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


# -- measuring -----------------------------------------------------------------------------------

def upload(port: int, user: str, key: Path, local: Path, remote: str, work: Path,
           *, verbose: bool = False) -> tuple[float, str]:
    """Seconds the whole ``sftp`` run took, and its stderr (``verbose``: ssh's debug lines)."""
    batch = work / "batch.txt"
    batch.write_text(f"put {local} {remote}\n")
    argv = ["sftp", "-b", str(batch), "-i", str(key), "-F", "/dev/null",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            *(["-v"] if verbose else ["-o", "LogLevel=ERROR"]), "-P", str(port), f"{user}@127.0.0.1"]
    os.sync()  # the previous upload's dirty pages are written back outside anyone's clock
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise BenchError(f"sftp to port {port} failed:\n{done.stderr[-3000:]}")
    return seconds, done.stderr


def negotiated(stderr: str) -> str:
    """``aes128-ctr MAC: umac-64-etm@openssh.com``, from ssh's ``kex: client->server`` line."""
    for line in stderr.splitlines():
        if "kex: client->server cipher:" in line:
            return line.split("cipher:", 1)[1].split(" compression:", 1)[0].strip()
    return "?"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def random_file(path: Path, size_mb: int) -> str:
    h = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(size_mb):
            block = os.urandom(MB)
            h.update(block)
            f.write(block)
    return h.hexdigest()


class Target:
    def __init__(self, name: str, port: int, user: str, remote: str, landed: Any) -> None:
        self.name, self.port, self.user, self.remote, self.landed = name, port, user, remote, landed
        self.cipher = "?"


def measure(targets: list[Target], key: Path, source: Path, digest: str, work: Path,
            args: argparse.Namespace) -> list[Run]:
    small = work / "calentamiento.bin"
    random_file(small, 5)
    for t in targets:  # warm-up: keys, page cache, the server's first connection
        _seconds, debug = upload(t.port, t.user, key, small, t.remote, work, verbose=True)
        t.cipher = negotiated(debug)
        print(f"  {t.name}: {t.cipher}", flush=True)
        for path in t.landed():
            path.unlink()
    runs = []
    for n in range(args.rounds):
        for t in targets if n % 2 == 0 else targets[::-1]:
            seconds, _ = upload(t.port, t.user, key, source, t.remote, work)
            landed = t.landed()
            ok = len(landed) == 1 and sha256(landed[0]) == digest
            for path in landed:
                path.unlink()
            run = Run(t.name, n + 1, seconds, args.size / seconds, ok)
            print(f"  round {run.round} {t.name:11s} {run.seconds:6.2f} s  {run.mbps:7.1f} MB/s"
                  f"  sha256 {'ok' if ok else 'MISMATCH'}", flush=True)
            if not ok:
                raise BenchError(f"{t.name}: the uploaded file is not the one sent")
            runs.append(run)
    return runs


def run(root: Path, args: argparse.Namespace) -> tuple[list[Run], dict[str, str], str]:
    key = root / "client_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True,
                   capture_output=True)
    source = root / "PREP_BENCH.zip"
    print(f"writing {args.size} MB of random bytes ...", flush=True)
    digest = random_file(source, args.size)
    receiver, port, inbox = start_receiver(root / "difusor", key)
    anchor: OpenSSH | None = None
    note = ""
    try:
        uploads = inbox.parent / "sftp"

        def delivered() -> list[Path]:
            found = sorted(inbox.iterdir())
            for stale in uploads.iterdir():  # the upload itself (the inbox holds a hard link)
                stale.unlink()
            return found

        targets = [Target("embedded", port, USER, "/PREP_BENCH.zip", delivered)]
        if os.geteuid() == 0:
            anchor = OpenSSH(key, CIPHERS)
            up = anchor.upload_dir
            for name, anchor_port in anchor.ports.items():
                targets.append(Target(name, anchor_port, anchor.user, "/upload/PREP_BENCH.zip",
                                      lambda: sorted(up.iterdir())))
        else:
            note = "not root: OpenSSH anchor skipped (it needs a system user and a chroot in /srv)"
            print(note, flush=True)
        runs = measure(targets, key, source, digest, root, args)
        ciphers = {t.name: t.cipher for t in targets}
    finally:
        receiver.stop()
        if anchor is not None:
            anchor.close()
    return runs, ciphers, note


def summarize(runs: list[Run]) -> dict[str, dict[str, float]]:
    out = {}
    for name in dict.fromkeys(r.server for r in runs):
        mbps = [r.mbps for r in runs if r.server == name]
        out[name] = {"median_mbps": statistics.median(mbps), "min_mbps": min(mbps),
                     "max_mbps": max(mbps)}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        return serve(Path(args.serve))
    guard(args.rounds * 3 * (args.size // 10 + 30) + 180)
    load_before = machine_load()
    print_load("before", load_before)
    with tempfile.TemporaryDirectory(prefix="difusor-bench-") as tmp:
        runs, ciphers, note = run(Path(tmp), args)
    summary = summarize(runs)
    emb = summary["embedded"]
    ratios = {name: emb["median_mbps"] / s["median_mbps"] for name, s in summary.items()
              if name != "embedded"}
    meets_target = emb["median_mbps"] >= TARGET_MBPS
    meets_floor = emb["min_mbps"] >= FLOOR_MBPS
    rows = [[name, *[r.mbps for r in runs if r.server == name], s["median_mbps"], s["min_mbps"],
             ciphers[name]] for name, s in summary.items()]
    print()
    print(table(["server", *[f"round {n + 1}" for n in range(args.rounds)], "median MB/s",
                 "min MB/s", "cipher"], rows, f"sftp put of {args.size} MB, OpenSSH client defaults"))
    if ratios:
        print(f"\nratio embedded/openssh_aes (medians, same ciphers): {ratios['openssh_aes']:.3f}")
        print(f"ratio embedded/openssh (medians, sshd's default ciphers): {ratios['openssh']:.3f}")
    print(f"embedded median {emb['median_mbps']:.1f} MB/s, target >= {TARGET_MBPS:.0f}: "
          f"{'PASS' if meets_target else 'MISS'}")
    print(f"embedded slowest {emb['min_mbps']:.1f} MB/s, floor >= {FLOOR_MBPS:.0f}: "
          f"{'PASS' if meets_floor else 'MISS'}")
    path = write_result(NAME, {
        "quick": args.quick, "size_mb": args.size, "rounds": args.rounds,
        "client": subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip(),
        "ciphers": ciphers, "runs": [asdict(r) for r in runs], "summary": summary,
        "ratio": ratios.get("openssh_aes"), "ratio_vs_default_sshd": ratios.get("openssh"),
        "target_mbps": TARGET_MBPS, "floor_mbps": FLOOR_MBPS, "meets_target": meets_target,
        "meets_floor": meets_floor, "note": note, "load_before": load_before,
    })
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
