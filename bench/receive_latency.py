"""End to end: "upload closed" → "its main.json is served", over 50 cortes, through ``difusor run``.

    python bench/receive_latency.py [--quick] [--cortes N]

Irimbo-size cortes (~50 files, ~2 MB; a full package, then incremental ones) are uploaded by an
SFTP client (asyncssh, one connection per corte as an authority's system would) under a
temporary ``.part`` name and renamed to the final name; the clock starts when the rename is
acknowledged and stops when a separate poller process (every ~2 ms over HTTP) first gets the
new main.json. Two receiving paths, each a whole ``difusor run`` with its web server:

- ``embedded``: the built-in SFTP receiver;
- ``openssh`` (root only): sshd with ``internal-sftp`` in a chroot, plus the drop-folder watcher
  on its upload folder — the production setup ``difusor sftp-config`` describes.

Cortes come every 10 minutes; the bench leaves ``--gap`` seconds (default 1) between uploads so
each sample is one corte, not one corte plus the previous one's off-path finishing work.

Reported: p50/p95 per path and their ratio. There is no fixed target in the issue; the
publish step alone is measured against unzip+rsync by publish_latency.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import asyncssh
from harness import (
    POLLER_ALLOWED,
    BenchError,
    Child,
    free_port,
    guard,
    machine_load,
    print_load,
    wait_serving,
    wait_ssh,
)
from publish_latency import MAIN_JSON, Poller
from results import percentile, table, write_result
from sites import irimbo_cortes

from difusor import config as config_mod
from difusor.demo.authority import make_key

NAME = "receive_latency"


@dataclass
class Sample:
    path: str
    corte: int
    kind: str
    upload_ms: float
    latency_ms: float
    arrival_to_live_ms: float | None = None  # the publisher's share, from run's log


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="5 cortes, 0.25 s apart (the suite's smoke run)")
    p.add_argument("--cortes", type=int, default=50)
    p.add_argument("--gap", type=float, default=1.0, help="seconds between uploads")
    p.add_argument("--max-seconds", type=int, default=900)
    args = p.parse_args(argv)
    if args.quick:
        args.cortes = 5
        args.gap = min(args.gap, 0.25)
    return args


class Path_:
    """One receiving path: a ``difusor run`` and where its SFTP client connects."""

    def __init__(self, name: str, root: Path, key: Path, *, extra_toml: str = "",
                 sftp_port: int | None = None, user: str = "iem") -> None:
        self.name = name
        self.root = root
        self.key = key
        self.user = user
        self.web = free_port()
        self.sftp = sftp_port or free_port()
        root.mkdir(parents=True, exist_ok=True)
        (root / "keys").mkdir(exist_ok=True)
        (root / "keys" / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
        self.config = root / "difusor.toml"
        own_sftp = sftp_port is None
        self.config.write_text(config_mod.render_default(
            web_listen=f"127.0.0.1:{self.web}",
            sftp_listen=f"127.0.0.1:{self.sftp if own_sftp else free_port()}",
        ).replace("[sftp]\n", "[sftp]\n" + ("" if own_sftp else "enabled = false\n"))
            + POLLER_ALLOWED + extra_toml)
        self.child = Child(f"difusor run ({name})",
                           [sys.executable, "-m", "difusor", "run", "--config", str(self.config)],
                           root / "run.out")
        wait_serving(self.child, self.url + "/_difusor/health")
        if own_sftp:  # the web server can answer before the SFTP part listens
            wait_ssh(self.child, self.sftp)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web}"

    def upload(self, name: str, data: bytes) -> float:
        """Upload as NAME.part, rename to NAME; returns when the rename is acknowledged."""
        return asyncio.run(self._upload(name, data))

    async def _upload(self, name: str, data: bytes) -> float:
        async with asyncssh.connect("127.0.0.1", self.sftp, username=self.user,
                                    client_keys=[str(self.key)], known_hosts=None,
                                    agent_path=None) as conn, conn.start_sftp_client() as sftp:
            started = time.perf_counter()
            async with sftp.open(name + ".part", "wb") as f:
                await f.write(data)
            await sftp.rename(name + ".part", name)
            return (time.perf_counter() - started) * 1000

    def stop(self) -> None:
        self.child.stop()

    def arrival_to_live_ms(self) -> list[float]:
        """What ``difusor run`` logged per package: inbox arrival → live (activation)."""
        return [float(m) for m in re.findall(r"\((\d+) ms desde la llegada\)", self.child.tail(10**7))]


def measure(side: Path_, poller: Poller, cortes: int, gap: float) -> list[Sample]:
    samples = []
    for n, corte in zip(range(cortes), irimbo_cortes(0), strict=False):
        if n:
            time.sleep(gap)
        kind = "full" if n == 0 else "incremental"
        data = corte.package(kind)
        if n:
            poller.watch(side.url, corte.files[MAIN_JSON])
        upload_ms = side.upload(f"{corte.name}.zip", data)
        t0 = time.monotonic_ns()
        if n:
            seen, _ = poller.seen()
            samples.append(Sample(side.name, n, kind, upload_ms, (seen - t0) / 1e6))
        else:  # the first corte: nothing served before it to compare against
            _wait_first(side)
        if n % 10 == 0:
            print(f"  {side.name}: corte {n + 1}/{cortes}", flush=True)
    time.sleep(0.2)  # the log line is written just after activation
    logged = side.arrival_to_live_ms()[1:]
    for sample, ms in zip(samples, logged, strict=False):
        sample.arrival_to_live_ms = ms
    return samples


def _wait_first(side: Path_) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(side.url + "/" + MAIN_JSON, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise BenchError(f"{side.name}: the first corte was not served within 30 s:\n{side.child.tail()}")


def summarize(samples: list[Sample]) -> dict[str, dict[str, float]]:
    out = {}
    for name in dict.fromkeys(s.path for s in samples):
        lat = [s.latency_ms for s in samples if s.path == name]
        up = [s.upload_ms for s in samples if s.path == name]
        out[name] = {"n": len(lat), "p50_ms": percentile(lat, 50), "p95_ms": percentile(lat, 95),
                     "max_ms": max(lat), "mean_ms": statistics.fmean(lat),
                     "upload_p50_ms": percentile(up, 50),
                     "arrival_to_live_p50_ms": percentile(
                         [s.arrival_to_live_ms or 0.0 for s in samples if s.path == name], 50)}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    guard(args.max_seconds)
    load_before = machine_load()
    print_load("before", load_before)
    samples: list[Sample] = []
    openssh_note = ""
    # Under /srv when root: sshd's chroot rules forbid /tmp, and the drop folder and the state
    # must share a filesystem for the watcher's rename.
    base = "/srv" if os.geteuid() == 0 and Path("/srv").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="difusor-bench-", dir=base) as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        key = work / "autoridad" / "id_ed25519"
        make_key(key)
        poller = Poller(work / "poller.log")
        try:
            embedded = Path_("embedded", work / "embedded", key)
            try:
                samples += measure(embedded, poller, args.cortes, args.gap)
            finally:
                embedded.stop()
            if os.geteuid() == 0 and Path("/usr/sbin/sshd").exists():
                samples += _openssh(work, key, poller, args.cortes, args.gap)
            else:
                openssh_note = "openssh path skipped: needs root and /usr/sbin/sshd"
                print(openssh_note)
        finally:
            poller.child.stop()
    summary = summarize(samples)
    rows = [[name, s["n"], f"{s['upload_p50_ms']:.1f}", f"{s['arrival_to_live_p50_ms']:.0f}",
             f"{s['p50_ms']:.1f}", f"{s['p95_ms']:.1f}", f"{s['max_ms']:.1f}"]
            for name, s in summary.items()]
    print()
    print(table(["path", "cortes", "upload p50 ms", "inbox→live p50 ms", "p50 ms", "p95 ms",
                 "max ms"], rows,
                title="upload acknowledged → new main.json served (difusor run, Irimbo size)"))
    ratio = None
    if "openssh" in summary:
        ratio = summary["openssh"]["p50_ms"] / summary["embedded"]["p50_ms"]
        print(f"\nratio openssh+watcher / embedded (p50): {ratio:.2f}")
    path = write_result(NAME, {"quick": args.quick, "settings": {"cortes": args.cortes, "gap_s": args.gap},
                               "summary": summary, "ratio_openssh_over_embedded": ratio,
                               "note": openssh_note, "samples": [asdict(s) for s in samples],
                               "load_before": load_before})
    print(f"result: {path}")
    return 0


def _openssh(work: Path, key: Path, poller: Poller, cortes: int, gap: float) -> list[Sample]:
    from sftp_throughput import OpenSSH

    from difusor.receive.sftp import CIPHERS

    sshd = OpenSSH(key, ciphers=CIPHERS)
    try:
        toml = f'\n[dropfolder]\ndirs = ["{sshd.upload_dir}"]\n'
        side = Path_("openssh", sshd.base / "difusor", key, extra_toml=toml,
                     sftp_port=sshd.ports["openssh"], user=sshd.user)
        try:
            return measure(side, poller, cortes, gap)
        finally:
            side.stop()
    finally:
        sshd.close()


if __name__ == "__main__":
    sys.exit(main())
