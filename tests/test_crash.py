"""Crash safety: ``difusor publish`` killed with SIGKILL anywhere leaves a whole corte live.

After every kill: ``current`` names a release folder that matches its manifest exactly, the live
corte is the previous one or the new one, a running ``difusor serve`` kept answering 200 with one
of those two, and publishing the same package again completes the job (new corte live, ledger in
step, every original kept). Random kill times (seeded, calibrated on a real publish) are backed by
deterministic kills at each stage boundary, so the short windows are covered too.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import brotli
import httpx
import pytest
from conftest import ServerProcess, Site, free_port, make_site

from difusor.demo.election import Corte, SyntheticElection
from difusor.demo.packages import write_package
from difusor.ledger import Ledger
from difusor.publish.activate import activate, live_release, read_generation, site_release
from difusor.publish.publisher import Publisher
from difusor.store.layout import StoreLayout
from difusor.store.manifest import ManifestStore
from difusor.store.objects import ObjectStore

SEED = 20241208
TRIALS = 6
CASILLAS = 150  # ≈ 160 files a corte: a publish takes ~1 s on these machines (0.5 s of it imports)
START = SyntheticElection().start
SUBPROCESS_ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}

pytestmark = pytest.mark.timeout(240)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def corte_at(n: int, casillas: int = CASILLAS) -> Corte:
    """Corte ``n`` of a series in which every acta is counted and every casilla file changes."""
    election = SyntheticElection(casillas=casillas, start=START + n * timedelta(minutes=10))
    return next(election.cortes(1))


def package_for(corte: Corte, folder: Path, kind: str) -> Path:
    if kind == "incremental":  # everything but the static assets, on top of the live corte
        corte = dataclasses.replace(
            corte, changed={p for p in corte.files if p.startswith(("json/", "datos/"))}
        )
    return write_package(corte, folder, kind=kind)


def expected(corte: Corte) -> dict[str, str]:
    return {p: sha(b) for p, b in corte.files.items()}


# -- what must hold after any kill ------------------------------------------------------------


def check_live(store: StoreLayout, allowed: dict[str, dict[str, str]], *, tree: bool = False) -> str:
    """``current`` → a whole release, one of ``allowed`` (id → path → sha256); returns its id.

    Every file of the live manifest must be readable with its exact bytes (loose, or still in
    the publication's pack). Its tree of hard links for nginx (``site``) may lag behind right
    after a kill; with ``tree`` (after recovery) it must be there and whole."""
    target = os.readlink(store.current)
    release_id = live_release(store)
    assert release_id in allowed, f"live corte {release_id} is none of {sorted(allowed)}"
    assert target == f"manifests/{release_id}.json", target
    manifest_path = store.manifests / f"{release_id}.json"
    assert manifest_path.is_file(), f"the live release {release_id} has no manifest"
    manifest = ManifestStore(store.manifests).load(release_id)
    assert manifest.release_id == release_id
    files = {p: e.sha256 for p, e in manifest.files.items()}
    assert files == allowed[release_id], f"manifest of {release_id} is not that corte's file list"
    objects = ObjectStore(store.objects, fsync=False, packs=store.packs)
    for path, entry in manifest.files.items():
        assert sha(objects.read(entry.sha256)) == entry.sha256, f"{release_id}/{path} unreadable"
    if tree:
        assert site_release(store) == release_id, f"site → {site_release(store)}, not {release_id}"
    if site_release(store) != release_id:
        return release_id
    folder = store.site.resolve()
    assert folder == (store.releases / release_id).resolve() and folder.is_dir(), folder
    on_disk: dict[str, Path] = {}
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            full = Path(dirpath) / name
            assert not full.is_symlink(), f"symlink {full} in a release folder"
            on_disk[full.relative_to(folder).as_posix()] = full
    missing = sorted(set(manifest.files) - set(on_disk))
    assert not missing, f"{release_id}: {len(missing)} manifest paths missing, e.g. {missing[:3]}"
    for path, entry in manifest.files.items():
        data = on_disk[path].read_bytes()
        assert sha(data) == entry.sha256 and len(data) == entry.size, f"{release_id}/{path} differs"
    for path in sorted(set(on_disk) - set(manifest.files)):
        base, _, enc = path.rpartition(".")
        assert enc in ("gz", "br") and base in manifest.files, f"{release_id}: stray file {path}"
        raw = on_disk[path].read_bytes()
        plain = gzip.decompress(raw) if enc == "gz" else brotli.decompress(raw)
        assert sha(plain) == manifest.files[base].sha256, f"{release_id}/{path} is not {base}"
    return release_id


def check_after_republish(site: Site, corte: Corte, package_shas: set[str]) -> None:
    """The same package published again: the new corte is live and nothing was lost."""
    store = site.store
    assert check_live(store, {corte.stamp: expected(corte)}, tree=True) == corte.stamp
    with Ledger(site.state.ledger) as ledger:
        last = ledger.last_activation()
        assert last is not None and last.release_id == corte.stamp, (
            f"ledger's last activation {last} but {corte.stamp} is live"
        )
        rows = ledger.packages(limit=10_000)
    for row in rows:
        assert row["state"] in ("activated", "duplicate", "interrupted"), (
            f"package #{row['id']} {row['name']} left in state {row['state']!r}"
        )
        assert row["kept_at"] and Path(row["kept_at"]).is_file(), (
            f"package #{row['id']} {row['name']} ({row['state']}) is not kept: {row['kept_at']}"
        )
    kept = {sha(p.read_bytes()) for p in site.state.packages.iterdir() if p.is_file()}
    assert package_shas <= kept, "an original package is missing from state/packages/"
    leftovers = [p for d in (store.tmp, store.build, site.state.incoming) for p in d.iterdir()]
    assert not leftovers, f"leftovers after a clean publish: {leftovers}"
    assert not any(site.state.quarantine.iterdir()), "a package was quarantined"


def iso_seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def publish_cmd(pkg: Path, config: Path) -> list[str]:
    return [sys.executable, "-m", "difusor", "publish", str(pkg), "--config", str(config)]


# -- the server as a public reader sees it ----------------------------------------------------


class Watcher:
    """Polls ``/json/main.json`` all along; each answer is tagged with the trials it spans."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.phase = 0  # the trial in progress (0: before the first)
        self.answers: list[tuple[int, int, int, str, str | None]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=20)

    def _run(self) -> None:
        fresh = {"headers": {"Connection": "close"},
                 "limits": httpx.Limits(max_keepalive_connections=0)}
        with httpx.Client(timeout=5) as kept, httpx.Client(timeout=5, **fresh) as hopping:
            n = 0
            while not self._stop.is_set():
                n += 1
                client = kept if n % 2 else hopping
                first = self.phase
                try:
                    r = client.get(self.url + "/json/main.json")
                except httpx.HTTPError as exc:
                    self.errors.append(f"phase {first}: {type(exc).__name__}: {exc}")
                    continue
                self.answers.append(
                    (first, self.phase, r.status_code, sha(r.content), r.headers.get("x-difusor-corte"))
                )
                self._stop.wait(0.005)


# -- random kills -----------------------------------------------------------------------------


class Timeline:
    """How long, after a ``difusor publish`` run takes the package in, it goes live and ends.

    Measured from the intake (the private copy appearing in ``state/incoming/``) so the
    interpreter's start-up, which varies a lot on a loaded machine, does not blur the stages.
    Read from the ledger's own timestamps and refreshed by every re-publish that does the whole
    job, so kill times follow the machine's load.
    """

    def __init__(self) -> None:
        self.live = self.total = 0.0
        self.runs = 0

    def run(self, site: Site, pkg: Path) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(publish_cmd(pkg, site.config_path), capture_output=True,
                              env=SUBPROCESS_ENV, timeout=120)
        ended = time.time()
        with Ledger(site.state.ledger) as ledger:
            rows = ledger.packages(limit=1)
            last = ledger.last_activation()
        if done.returncode == 0 and rows and last:
            received = iso_seconds(rows[0]["received_at"])
            live, total = iso_seconds(last.at) - received, ended - received
            if rows[0]["release_id"] == last.release_id and 0 < live < total:  # a whole publish
                w = 1 / (self.runs + 1) if self.runs < 4 else 0.25
                self.live += w * (live - self.live)
                self.total += w * (total - self.total)
                self.runs += 1
        return done

    def delay(self, stage: str, position: float) -> float:
        if stage == "before":  # verifying, storing, building: from intake to activation
            return self.live * position
        return self.live + (self.total - self.live) * position  # variants, spare


def wait_for_intake(incoming: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until the run's private copy of the package shows up in ``state/incoming/``."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        with os.scandir(incoming) as entries:
            if any(True for _ in entries):
                return
        time.sleep(0.001)


@pytest.mark.slow
def test_sigkill_at_random_points_always_leaves_a_whole_corte_live(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    port = free_port()
    site = make_site(tmp_path / "difusor", port=port)
    cortes = [corte_at(n) for n in range(TRIALS + 2)]
    main_sha = [sha(c.files["json/main.json"]) for c in cortes]
    folder = tmp_path / "paquetes"
    packages = [package_for(c, folder, "full" if n % 2 == 0 else "incremental")
                for n, c in enumerate(cortes)]
    package_shas = {sha(packages[0].read_bytes())}
    # Stratified, seeded kill points, timed from the intake: half while the package is verified,
    # stored and built, half after the corte went live (variants, the spare), spread evenly.
    before = TRIALS // 2
    plan = [("before", (i + rng.random()) / before) for i in range(before)]
    plan += [("after", (i + rng.random()) / (TRIALS - before)) for i in range(TRIALS - before)]
    rng.shuffle(plan)
    timeline = Timeline()
    outcomes: dict[str, int] = {"previous live": 0, "new live (killed)": 0, "finished first": 0}
    kills: list[str] = []
    server: ServerProcess | None = None
    try:
        site.publisher.publish(packages[0])
        server = ServerProcess(site.config_path, port).start()
        with Watcher(server.url) as watcher:
            # Calibrate on a normal publish, under the same load as the trials.
            watcher.phase = 1
            package_shas.add(sha(packages[1].read_bytes()))
            calibration = timeline.run(site, packages[1])
            assert calibration.returncode == 0 and timeline.runs == 1, calibration.stderr.decode()
            check_after_republish(site, cortes[1], package_shas)

            for n in range(2, TRIALS + 2):
                watcher.phase = n
                prev, new = cortes[n - 1], cortes[n]
                pkg = packages[n]
                package_shas.add(sha(pkg.read_bytes()))
                stage, position = plan[n - 2]
                delay = timeline.delay(stage, position)
                proc = subprocess.Popen(publish_cmd(pkg, site.config_path), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, env=SUBPROCESS_ENV)
                wait_for_intake(site.state.incoming, proc)
                time.sleep(delay)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                code = proc.wait(timeout=60)
                assert code in (0, -signal.SIGKILL), f"trial {n}: publish exited {code}"
                live = check_live(site.store, {prev.stamp: expected(prev), new.stamp: expected(new)})
                if code == 0:
                    outcome = "finished first"
                    assert live == new.stamp
                else:
                    outcome = "new live (killed)" if live == new.stamp else "previous live"
                outcomes[outcome] += 1
                kills.append(f"{delay:.2f}s/{stage}:{outcome.split()[0]}")

                again = timeline.run(site, pkg)
                assert again.returncode == 0, (
                    f"trial {n} (killed at {delay:.3f} s, {live} live): republish exited "
                    f"{again.returncode}: {again.stderr.decode()[-2000:]}"
                )
                check_after_republish(site, new, package_shas)
                deadline = time.monotonic() + 5
                while True:
                    r = httpx.get(server.url + "/json/main.json", timeout=5)
                    if r.status_code == 200 and sha(r.content) == main_sha[n]:
                        break
                    assert time.monotonic() < deadline, f"trial {n}: the server never served {new.stamp}"
                    time.sleep(0.02)
        answers, errors = watcher.answers, watcher.errors
    finally:
        if server is not None:
            server.stop()
        site.ledger.close()

    print(f"timeline after intake: live at {timeline.live:.3f} s, done at {timeline.total:.3f} s "
          f"({timeline.runs} runs); outcomes {outcomes}; kills {kills}; "
          f"server answers checked: {len(answers)}")
    assert not errors, f"{len(errors)} failed requests of {len(answers) + len(errors)}: {errors[:5]}"
    bad = []
    for first, last, status, digest, header in answers:
        allowed = set(main_sha[max(first - 1, 0): last + 1])
        if status != 200 or digest not in allowed:
            bad.append((first, last, status, header))
    assert not bad, f"{len(bad)} of {len(answers)} answers were not 200 with a live corte: {bad[:5]}"
    assert len(answers) >= 100, f"only {len(answers)} answers from the server"
    assert outcomes["previous live"] >= 2 and outcomes["new live (killed)"] >= 2, (
        f"kills did not land on both sides of the activation: {outcomes}"
    )


# -- deterministic kills at every stage boundary ----------------------------------------------

_KILLER = textwrap.dedent(
    """
    import importlib, os, signal, sys

    module, _, attr = sys.argv[1].partition(":")
    owner = importlib.import_module(module)
    for part in attr.split(".")[:-1]:
        owner = getattr(owner, part)
    name = attr.split(".")[-1]
    when, nth = sys.argv[2], int(sys.argv[3])
    real = getattr(owner, name)
    calls = [0]

    def hooked(*args, **kwargs):
        calls[0] += 1
        hit = calls[0] == nth
        if hit and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if hit and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, hooked)
    sys.argv = ["difusor", *sys.argv[4:]]
    from difusor.cli import main
    main()
    """
)

# (where, before/after, nth call, which corte is live right after the kill)
KILL_POINTS = [
    ("difusor.publish.publisher:take_in", "after", 1, "old"),
    ("difusor.ledger:Ledger.package_received", "after", 1, "old"),
    ("difusor.publish.publisher:read_package", "after", 1, "old"),
    ("difusor.store.packs:PackWriter.seal", "after", 1, "old"),
    ("difusor.store.objects:Staging.commit", "after", 1, "old"),
    ("difusor.store.manifest:ManifestStore.save", "after", 1, "old"),
    ("difusor.ledger:Ledger.release_stored", "after", 1, "old"),
    ("difusor.publish.activate:bump_generation", "before", 1, "new"),
    ("difusor.publish.publisher:activate", "after", 1, "new"),
    ("difusor.ledger:Ledger.activated", "after", 1, "new"),
    ("difusor.receive.intake:Intake.keep", "after", 1, "new"),
    ("difusor.store.objects:write_file", "after", 10, "new"),
    ("difusor.store.objects:ObjectStore.unpack", "after", 1, "new"),
    ("brotli:compress", "after", 5, "new"),
    ("difusor.store.objects:ObjectStore.make_variants", "after", 1, "new"),
    ("difusor.store.releases:_Linker.link", "after", 10, "new"),
    ("difusor.store.releases:ReleaseDirs.build", "after", 1, "new"),
    ("difusor.publish.activate:point_site", "after", 1, "new"),
    ("difusor.store.releases:_clone_links", "after", 1, "new"),
]


@pytest.mark.parametrize(("where", "when", "nth", "live_after"), KILL_POINTS,
                         ids=[f"{w.split(':')[1]}-{b}" for w, b, _, _ in KILL_POINTS])
@pytest.mark.slow
def test_sigkill_at_each_stage_boundary(
    site: Site, tmp_path: Path, where: str, when: str, nth: int, live_after: str
) -> None:
    old, new = corte_at(0, casillas=30), corte_at(1, casillas=30)
    site.publisher.publish(package_for(old, tmp_path / "pk", "full"))  # leaves a spare for `new`
    pkg = package_for(new, tmp_path / "pk", "incremental")
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, where, when, str(nth), "publish", str(pkg),
         "--config", str(site.config_path)],
        capture_output=True, env=SUBPROCESS_ENV, timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, (
        f"the kill at {where} never fired (exit {proc.returncode}): {proc.stderr.decode()[-2000:]}"
    )
    live = check_live(site.store, {old.stamp: expected(old), new.stamp: expected(new)})
    assert live == (old.stamp if live_after == "old" else new.stamp)

    with Ledger(site.state.ledger) as ledger:  # in-process: the random test covers the CLI's exit
        again = Publisher(site.cfg, ledger).publish(pkg)
    assert again.release_id == new.stamp and again.status in ("published", "unchanged"), again
    shas = {sha(p.read_bytes()) for p in tmp_path.joinpath("pk").iterdir()}
    check_after_republish(site, new, shas)


# -- recover() on its own ---------------------------------------------------------------------


def test_recover_tidies_leftovers_and_records_a_missed_activation(site: Site, tmp_path: Path) -> None:
    a, b = corte_at(0, casillas=12), corte_at(1, casillas=12)
    site.publisher.publish(package_for(a, tmp_path / "pk", "full"))
    site.publisher.publish(package_for(b, tmp_path / "pk", "incremental"))
    store = site.store
    assert live_release(store) == b.stamp

    # What a killed run leaves behind: staged objects, a half-built release, a variants folder,
    # an unfinished copy and a named copy of a package in incoming/.
    (store.tmp / "staging-999-deadbeef").mkdir()
    (store.tmp / "staging-999-deadbeef" / "ab12").write_bytes(b"half")
    (store.tmp / "variants-999-cafe").mkdir()
    (store.build / "20241208_2030" / "json").mkdir(parents=True)
    (store.build / "20241208_2030" / "json" / "main.json").write_bytes(b"{}")
    (site.state.incoming / ".0123abcd.part").write_bytes(b"partial copy")
    named = site.state.incoming / "20261128T120000-abcdef_20241208_2030_PREP.zip"
    pid = site.ledger.package_received("20241208_2030_PREP.zip", sha(b"pkg"), 3, named.name)
    site.ledger.package_update(pid, state="verified")
    named.write_bytes(b"pkg")
    # A copy whose run died before the ledger heard of it is registered, not lost.
    orphan = site.state.incoming / "20261128T120001-fedcba_20241208_2040_PREP.zip"
    orphan.write_bytes(b"orphan")

    # An activation the ledger never heard of: back to corte `a` behind the ledger's back.
    activate(store, a.stamp)
    generation = read_generation(store)
    last = site.ledger.last_activation()
    assert last is not None and last.release_id == b.stamp

    with Ledger(site.state.ledger) as ledger:
        Publisher(site.cfg, ledger).recover()

    assert not list(store.tmp.iterdir()), list(store.tmp.iterdir())
    assert not list(store.build.iterdir()), list(store.build.iterdir())
    assert not list(site.state.incoming.iterdir()), list(site.state.incoming.iterdir())
    assert (site.state.packages / named.name).read_bytes() == b"pkg"
    row = site.ledger.package(pid)
    assert row is not None and row["state"] == "interrupted"
    assert row["kept_at"] == str(site.state.packages / named.name)
    found = site.ledger.package_by_copy(orphan.name)
    assert found is not None and found["state"] == "interrupted"
    assert found["name"] == "20241208_2040_PREP.zip" and found["sha256"] == sha(b"orphan")
    assert (site.state.packages / orphan.name).read_bytes() == b"orphan"

    last = site.ledger.last_activation()
    assert last is not None and last.release_id == a.stamp and last.cause == "recovery"
    assert last.previous_id == b.stamp
    assert read_generation(store) > generation  # servers are told to look again
    assert live_release(store) == a.stamp
    check_live(store, {a.stamp: expected(a)})

    # A second recovery has nothing left to do.
    count = len(site.ledger.activations(limit=100))
    generation = read_generation(store)
    site.publisher.recover()
    assert len(site.ledger.activations(limit=100)) == count
    assert read_generation(store) == generation
