"""Origins: two-phase publish (stage on every origin, then switch them all), failures, recovery.

In-process first (a recording double, an nginx origin folder), then real processes at the edges:
an S3 double (moto's server), and three live origins — ``difusor serve``, nginx on this host over
the nginx origin's folder, and a remote nginx fed by rsync over a real sshd on loopback — read by
a client all along ten and more publications.

``OriginContract`` holds what every origin kind must do on its own (staging serves nothing new,
switching serves what was staged, a failing phase is retried then reported in its result, pruning
keeps the live release); the local origin, nginx, S3, ssh and the recording double inherit it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import itertools
import json
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess, Site, free_port, make_site, minimal_site, stop_group
from test_crash import _KILLER, SUBPROCESS_ENV

from difusor import config as config_mod
from difusor.config import (
    LocalOriginSettings,
    NginxOriginSettings,
    S3OriginSettings,
    SshOriginSettings,
)
from difusor.demo.election import SyntheticElection
from difusor.demo.packages import write_package
from difusor.errors import ConfigError, PackageRefused
from difusor.headers import HeaderPolicy
from difusor.ledger import Ledger
from difusor.publish.activate import live_release
from difusor.publish.collect import collect_cortes
from difusor.publish.origins import JOURNAL, Context, Origin, OriginError, Release, origin_settings
from difusor.publish.publisher import Publisher
from difusor.publish.rollback import rollback
from difusor.store.manifest import ManifestStore

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SSHD = "/usr/sbin/sshd"
MAIN = "json/main.json"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def origin_toml(name: str, kind: str, **values: object) -> str:
    lines = ["[[origins]]", f'name = "{name}"', f'kind = "{kind}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n" + "\n".join(lines) + "\n"


def series(count: int, casillas: int = 9) -> list:
    return list(SyntheticElection(casillas=casillas).cortes(count))


def package(corte, folder: Path, n: int) -> Path:
    return write_package(corte, folder, kind="full" if n == 0 else "incremental")


def tree_of(folder: Path) -> dict[str, str]:
    """path → sha256 of every file under ``folder`` (variants left out)."""
    found = {}
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            full = Path(dirpath) / name
            rel = full.relative_to(folder).as_posix()
            if not rel.endswith((".gz", ".br")):
                found[rel] = sha(full.read_bytes())
    return found


def expected(corte) -> dict[str, str]:
    return {p: sha(b) for p, b in corte.files.items()}


def events(ledger: Ledger, kind: str) -> list[dict]:
    return list(reversed(ledger.events(kind, limit=10_000)))


# -- a recording double ---------------------------------------------------------------------

class Double(Origin):
    """An origin in memory: records every call, fails on demand (``fail[phase]`` calls; -1:
    always). It checks what it is given: staging needs the whole tree on disk."""

    kind = "doble"

    def __init__(self, name: str = "doble", *, retries: int = 2, backoff: float = 0.01) -> None:
        settings = NginxOriginSettings(name=name, kind="nginx", root="-", retries=retries,
                                       backoff=backoff)
        super().__init__(settings, None)  # type: ignore[arg-type]
        self.calls: list[tuple[str, str, float]] = []
        self.staged: set[str] = set()
        self.current: str | None = None
        self.fail = {"stage": 0, "switch": 0}

    def _maybe_fail(self, phase: str) -> None:
        left = self.fail[phase]
        if left:
            self.fail[phase] = left - 1 if left > 0 else left
            raise OriginError(f"origen {self.name}: {phase} falló (doble)")

    def _stage(self, release: Release) -> dict:
        self.calls.append(("stage", release.id, time.time()))
        self._maybe_fail("stage")
        on_disk = tree_of(release.tree)
        assert on_disk == {p: e.sha256 for p, e in release.manifest.files.items()}
        self.staged.add(release.id)
        return {"files": len(on_disk)}

    def _switch(self, release_id: str) -> dict:
        self.calls.append(("switch", release_id, time.time()))
        self._maybe_fail("switch")
        if release_id not in self.staged:  # a switch before its staging: the tests see it fail
            raise OriginError(f"origen {self.name}: {release_id} cambiado antes de prepararlo")
        self.current = release_id
        return {}

    def live(self) -> str | None:
        return self.current


@pytest.fixture
def doubled(tmp_path: Path) -> Iterator[tuple[Site, Double]]:
    site = make_site(tmp_path / "difusor")
    double = Double()
    site.publisher = Publisher(site.cfg, site.ledger, origins=[double])
    yield site, double
    site.ledger.close()


# -- configuration ------------------------------------------------------------------------------

def test_settings_are_checked_and_local_comes_first(tmp_path: Path) -> None:
    root = tmp_path / "c"
    site = make_site(root, origin_toml("web2", "nginx", root="/srv/x")
                     + origin_toml("s3", "s3", bucket="prep"))
    site.ledger.close()
    names = [(s.name, s.kind) for s in origin_settings(site.cfg)]
    assert names == [("local", "local"), ("web2", "nginx"), ("s3", "s3")]
    assert site.publisher.two_phase

    def refused(extra: str) -> str:
        (root / "difusor.toml").write_text(config_mod.render_default() + extra)
        with pytest.raises(ConfigError) as info:
            Publisher(config_mod.load(root / "difusor.toml"), site.ledger)
        return info.value.message

    assert "necesita root" in refused(origin_toml("a", "nginx"))
    assert "necesita host, root" in refused(origin_toml("a", "ssh"))
    assert "ya lo usa otro origen" in refused(origin_toml("a", "nginx", root="/x") * 2)
    assert "no son un nombre válido" in refused(origin_toml("a", "ssh", host="-oProxyCommand=x",
                                                            root="/srv/x"))
    assert "ruta absoluta simple" in refused(origin_toml("a", "ssh", host="h", root="srv/x"))
    assert "necesita bucket" in refused(origin_toml("a", "s3"))
    assert "solo puede haber un origen local" in refused(
        origin_toml("a", "local") + origin_toml("b", "local"))
    # Each kind takes its own keys; the checks run when difusor.toml is loaded (exit 3).
    assert "clave desconocida «bucket» en [[origins]] n.º 1" in refused(
        origin_toml("a", "nginx", root="/x", bucket="b"))
    assert "origins.0.kind: valor «ftp» no permitido; usa 'local', 'nginx', 'ssh' or 's3'" in \
        refused(origin_toml("a", "ftp"))
    (root / "difusor.toml").write_text(config_mod.render_default() + origin_toml("a", "nginx"))
    with pytest.raises(ConfigError, match=r"difusor\.toml: \[\[origins\]\] n\.º 1 \(a\): un "
                       "origen nginx necesita root") as err:
        config_mod.load(root / "difusor.toml")
    assert err.value.exit_code == 3
    (root / "difusor.toml").write_text(config_mod.render_default() + origin_toml(
        "a", "nginx", root="/x", retries=1, backoff=0.1, timeout=5) + origin_toml(
        "b", "ssh", host="h", root="/srv/x", known_hosts="k"))
    loaded = config_mod.load(root / "difusor.toml").origins
    assert loaded[0].timeout == 5 and loaded[1].known_hosts == "k"


def test_without_other_origins_activation_stays_one_local_step(site: Site) -> None:
    assert not site.publisher.two_phase
    out = site.publisher.publish(site.write_package("a.zip", minimal_site()))
    assert out.origins == {} and out.switch_window is None
    assert not events(site.ledger, "origin_staged") and not events(site.ledger, "switch_window")
    assert "materializado" not in out.timings


# -- two phases, in process -------------------------------------------------------------------

def test_every_origin_is_staged_before_any_switches(doubled, tmp_path: Path) -> None:
    site, double = doubled
    cortes = series(3)
    for n, corte in enumerate(cortes):
        out = site.publisher.publish(package(corte, tmp_path / "pk", n))
        assert out.status == "published" and out.origins == {"local": "en línea",
                                                              "doble": "en línea"}
        assert live_release(site.store) == double.current == corte.stamp
        assert out.switch_window is not None
        assert {"materializado", "preparado", "activado"} <= set(out.timings)
    assert [(p, r) for p, r, _ in double.calls] == [
        (phase, c.stamp) for c in cortes for phase in ("stage", "switch")]
    staged = events(site.ledger, "origin_staged")
    switched = events(site.ledger, "origin_switched")
    assert [(e["detail"]["origin"], e["release_id"]) for e in switched] == [
        (name, c.stamp) for c in cortes for name in ("local", "doble")]
    assert len(staged) == 6 and all(e["detail"]["ms"] >= 0 for e in staged + switched)
    assert all(e["detail"]["attempts"] == 1 for e in staged + switched)
    windows = events(site.ledger, "switch_window")
    assert len(windows) == 3 and set(windows[0]["detail"]["origins"]) == {"local", "doble"}
    # The local switch is only done when the servers serve it: the window covers both.
    local = [e for e in switched if e["detail"]["origin"] == "local"]
    assert all("generation" not in e["detail"] for e in local)
    assert not (site.store.root / JOURNAL).exists()


def test_refused_and_repeated_packages_touch_no_origin(doubled, tmp_path: Path) -> None:
    site, double = doubled
    first, second = series(2)
    site.publisher.publish(package(second, tmp_path / "pk", 0))
    calls = list(double.calls)
    with pytest.raises(PackageRefused):  # an older corte
        site.publisher.publish(package(first, tmp_path / "pk", 0))
    bad = site.write_package("malo.zip", {"index.html": b"x", MAIN: b"{no es json"})
    with pytest.raises(PackageRefused):
        site.publisher.publish(bad)
    again = site.publisher.publish(package(second, tmp_path / "pk", 0))
    assert again.status == "unchanged"
    assert double.calls == calls and double.current == second.stamp
    assert len(events(site.ledger, "origin_staged")) == 2


def test_a_failing_origin_is_retried_taken_out_then_comes_back(doubled, tmp_path: Path) -> None:
    site, double = doubled
    cortes = series(4)
    site.publisher.publish(package(cortes[0], tmp_path / "pk", 0))

    double.fail["stage"] = -1
    started = time.monotonic()
    out = site.publisher.publish(package(cortes[1], tmp_path / "pk", 1))
    assert time.monotonic() - started < 10
    assert out.origins == {"local": "en línea", "doble": "fuera de rotación"}
    assert live_release(site.store) == cortes[1].stamp and double.current == cortes[0].stamp
    tries = [c for c in double.calls if c[1] == cortes[1].stamp]
    assert [c[0] for c in tries] == ["stage"] * 3  # one try and two retries, never a switch
    assert tries[2][2] - tries[1][2] >= tries[1][2] - tries[0][2] >= 0.01  # backing off
    (gone,) = events(site.ledger, "origin_out")
    assert gone["detail"]["origin"] == "doble" and gone["detail"]["attempts"] == 3
    assert gone["detail"]["phase"] == "stage" and "falló (doble)" in gone["message"]
    assert site.ledger.origins_out() == {"doble"}

    # Still failing: one attempt only, so a dead origin does not hold every publication up.
    out = site.publisher.publish(package(cortes[2], tmp_path / "pk", 2))
    assert [c[0] for c in double.calls if c[1] == cortes[2].stamp] == ["stage"]
    assert events(site.ledger, "origin_out")[-1]["detail"]["again"] is True

    double.fail["stage"] = 0  # it is back: the next corte catches it up
    out = site.publisher.publish(package(cortes[3], tmp_path / "pk", 3))
    assert out.origins == {"local": "en línea", "doble": "en línea"}
    assert double.current == live_release(site.store) == cortes[3].stamp
    (back,) = events(site.ledger, "origin_back")
    assert back["detail"]["origin"] == "doble" and back["release_id"] == cortes[3].stamp
    assert site.ledger.origins_out() == set()
    states = site.ledger.origin_states()
    assert states["doble"]["live"] == states["local"]["live"] == cortes[3].stamp


def test_a_failed_switch_takes_only_that_origin_out(doubled, tmp_path: Path) -> None:
    site, double = doubled
    cortes = series(3)
    site.publisher.publish(package(cortes[0], tmp_path / "pk", 0))
    double.fail["switch"] = 1  # a blip: the retry succeeds
    out = site.publisher.publish(package(cortes[1], tmp_path / "pk", 1))
    assert out.origins["doble"] == "en línea" and double.current == cortes[1].stamp
    assert events(site.ledger, "origin_switched")[-1]["detail"]["attempts"] == 2
    double.fail["switch"] = -1
    out = site.publisher.publish(package(cortes[2], tmp_path / "pk", 2))
    assert out.origins == {"local": "en línea", "doble": "fuera de rotación"}
    assert live_release(site.store) == cortes[2].stamp and double.current == cortes[1].stamp
    assert events(site.ledger, "origin_out")[-1]["detail"]["phase"] == "switch"


def test_a_failed_local_activation_sends_the_others_back(doubled, tmp_path: Path,
                                                        monkeypatch) -> None:
    from difusor.publish.origins.local import LocalOrigin

    site, double = doubled
    old, new = series(2)
    site.publisher.publish(package(old, tmp_path / "pk", 0))

    def broken(self, release_id: str) -> dict:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LocalOrigin, "_switch", broken)
    with pytest.raises(PackageRefused) as refused:  # a full disk: refused for now, retried later
        site.publisher.publish(package(new, tmp_path / "pk", 1))
    assert refused.value.code == "no_space"
    assert live_release(site.store) == double.current == old.stamp
    assert [(p, r) for p, r, _ in double.calls][-2:] == [("stage", old.stamp),
                                                         ("switch", old.stamp)]
    row = site.ledger.packages(limit=1)[0]
    assert (row["state"], row["reason_code"]) == ("refused", "no_space")
    assert not (site.store.root / JOURNAL).exists()


def test_rollback_switches_every_origin(doubled, tmp_path: Path) -> None:
    site, double = doubled
    cortes = series(2)
    for n, corte in enumerate(cortes):
        site.publisher.publish(package(corte, tmp_path / "pk", n))
    assert rollback(site.publisher) == cortes[0].stamp
    assert double.current == live_release(site.store) == cortes[0].stamp
    assert events(site.ledger, "switch_window")[-1]["detail"]["cause"] == "rollback"


# -- what every origin kind must do ------------------------------------------------------------

@pytest.fixture
def two_cortes(tmp_path: Path) -> Iterator[tuple[Site, Release, Release]]:
    """A store holding two cortes (published on the embedded server alone), ready to stage."""
    site = make_site(tmp_path / "difusor")
    first, second = series(2)
    for n, corte in enumerate((first, second)):
        site.publisher.publish(package(corte, tmp_path / "pk", n))
    try:
        yield site, site.publisher._release(first.stamp), site.publisher._release(second.stamp)
    finally:
        site.publisher.close()
        site.ledger.close()


def context(site: Site) -> Context:
    p = site.publisher
    return Context(site.cfg, p.layout, p.objects, p.manifests)


class OriginContract:
    """Each kind's class provides an ``origin`` fixture (retries 1, a short backoff) and says how
    to read the main.json it serves, when that can be seen from here."""

    def main_json(self, origin: Origin) -> bytes | None:
        return None

    def test_switching_serves_what_was_staged_and_staging_alone_nothing(self, origin, two_cortes
                                                                        ) -> None:
        _site, first, second = two_cortes
        for release in (first, second):
            staged = origin.stage(release)
            assert staged.ok and staged.attempts == 1, staged.error
            if origin.live() is not None and release is second:
                assert origin.live() == first.id  # staged, not served
            switched = origin.switch(release.id)
            assert switched.ok and switched.attempts == 1, switched.error
            assert switched.ms >= 0 and switched.phase == "switch"
            assert origin.live() == release.id
            served = self.main_json(origin)
            assert served in (None, (release.tree / MAIN).read_bytes())

    def test_a_failing_phase_is_retried_then_reported_in_its_result(self, origin) -> None:
        result = origin.switch("20241208-2030-no-existe")
        assert not result.ok and result.exception is not None
        assert result.attempts == (2 if origin.retryable else 1)
        assert result.error and "\n" not in result.error
        assert origin.switch("20241208-2030-no-existe", retries=0).attempts == 1

    def test_pruning_keeps_the_live_release(self, origin, two_cortes) -> None:
        _site, first, second = two_cortes
        for release in (first, second):
            assert origin.stage(release).ok and origin.switch(release.id).ok
        origin.prune(set())
        assert origin.live() == second.id
        assert origin.switch(second.id).ok  # still there, whole
        assert self.main_json(origin) in (None, (second.tree / MAIN).read_bytes())


class TestLocalOriginContract(OriginContract):
    @pytest.fixture
    def origin(self, two_cortes) -> Origin:
        from difusor.publish.origins.local import LocalOrigin

        return LocalOrigin(LocalOriginSettings(name="local", kind="local"), context(two_cortes[0]))


class TestNginxOriginContract(OriginContract):
    @pytest.fixture
    def origin(self, two_cortes, tmp_path: Path) -> Origin:
        from difusor.publish.origins.nginx import NginxOrigin

        settings = NginxOriginSettings(name="web2", kind="nginx", root=str(tmp_path / "web2"),
                                       retries=1, backoff=0.01)
        return NginxOrigin(settings, context(two_cortes[0]))

    def main_json(self, origin: Origin) -> bytes | None:
        return (origin.root / "current" / MAIN).read_bytes()  # type: ignore[attr-defined]


class TestDoubleContract(OriginContract):
    @pytest.fixture
    def origin(self) -> Origin:
        return Double(retries=1)


# -- nginx on this host (the folder; nginx itself comes later) --------------------------------

@pytest.fixture
def with_nginx_origin(tmp_path: Path) -> Iterator[tuple[Site, Path]]:
    root = tmp_path / "web2"
    site = make_site(tmp_path / "difusor", origin_toml("web2", "nginx", root=str(root)))
    yield site, root
    site.ledger.close()


def test_nginx_origin_gets_hard_links_and_an_atomic_current(with_nginx_origin, tmp_path: Path
                                                            ) -> None:
    site, root = with_nginx_origin
    cortes = series(3)
    for n, corte in enumerate(cortes):
        out = site.publisher.publish(package(corte, tmp_path / "pk", n))
        assert out.origins == {"local": "en línea", "web2": "en línea"}
        assert os.readlink(root / "current") == f"releases/{corte.stamp}"
        assert tree_of(root / "current") == expected(corte)
    main = root / "current" / MAIN
    obj = site.store.objects / sha(main.read_bytes())[:2] / sha(main.read_bytes())[2:]
    assert main.stat().st_ino == obj.stat().st_ino  # a hard link: no byte copied
    # Compressed variants are made once the corte is live, then added to the live release.
    assert (root / "current" / (MAIN + ".gz")).exists()
    assert (root / "current" / (MAIN + ".br")).stat().st_ino == (
        site.store.site / (MAIN + ".br")).stat().st_ino
    added = [e["detail"] for e in events(site.ledger, "origin_variants")]
    assert [d["origin"] for d in added] == ["web2"] * 3 and all(d["added"] > 0 for d in added)
    assert sorted(p.name for p in (root / "releases").iterdir()) == [c.stamp for c in cortes]
    staged = [e for e in events(site.ledger, "origin_staged") if e["detail"]["origin"] == "web2"]
    assert [e["detail"]["method"] for e in staged] == ["enlaces"] * 3
    collect_cortes(site.publisher, keep=1)  # collection prunes the origin's releases too, never the live one
    assert [p.name for p in (root / "releases").iterdir()] == [cortes[-1].stamp]
    assert events(site.ledger, "gc")[-1]["detail"]["origins"] == {"web2": 2}


def test_nginx_origin_copies_across_filesystems(with_nginx_origin, tmp_path: Path,
                                                monkeypatch) -> None:
    import errno

    from difusor.publish.origins import nginx

    def cross_device(src: Path, dst: Path) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(nginx, "_link_tree", cross_device)
    site, root = with_nginx_origin
    cortes = series(2)
    for n, corte in enumerate(cortes):
        site.publisher.publish(package(corte, tmp_path / "pk", n))
        assert tree_of(root / "current") == expected(corte)
    staged = [e for e in events(site.ledger, "origin_staged") if e["detail"]["origin"] == "web2"]
    assert [e["detail"]["method"] for e in staged] == ["copia"] * 2
    # rsync --link-dest against the live release: unchanged files are shared, not copied again
    static = next(p for p in cortes[0].files if p not in cortes[1].changed)
    first, second = (root / "releases" / c.stamp / static for c in cortes)
    assert first.stat().st_ino == second.stat().st_ino


# -- a publish killed mid-way ---------------------------------------------------------------------

KILLS = [
    ("difusor.publish.origins.nginx:_link_tree", "after", 1),  # staging on the nginx origin
    ("difusor.publish.origins.twophase:OriginSet.stage", "after", 1),  # all staged, none switched
    ("difusor.publish.origins.nginx:NginxOrigin._switch", "after", 1),  # nginx switched
    ("difusor.publish.origins.local:LocalOrigin._switch", "before", 1),  # local not switched
    ("difusor.publish.origins.local:LocalOrigin._switch", "after", 1),  # local switched
    ("difusor.publish.origins.twophase:OriginSet._clear_journal", "before", 1),
]


@pytest.mark.parametrize(("where", "when", "nth"), KILLS,
                         ids=[f"{w.split(':')[1]}-{b}" for w, b, _ in KILLS])
@pytest.mark.slow
def test_sigkill_leaves_every_origin_on_a_whole_corte(with_nginx_origin, tmp_path: Path,
                                                      where: str, when: str, nth: int) -> None:
    site, root = with_nginx_origin
    old, new = series(2, casillas=12)
    site.publisher.publish(package(old, tmp_path / "pk", 0))
    pkg = package(new, tmp_path / "pk", 1)
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, where, when, str(nth), "publish", str(pkg),
         "--config", str(site.config_path)], capture_output=True, env=SUBPROCESS_ENV, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    whole = {old.stamp: expected(old), new.stamp: expected(new)}
    local, web2 = live_release(site.store), os.readlink(root / "current").split("/")[-1]
    assert local in whole and web2 in whole
    assert tree_of(root / "current") == whole[web2]

    with Ledger(site.state.ledger) as ledger:
        publisher = Publisher(site.cfg, ledger)
        publisher.recover()
        assert os.readlink(root / "current") == f"releases/{live_release(site.store)}"
        assert not (site.store.root / JOURNAL).exists()
        again = publisher.publish(pkg)
    assert again.release_id == new.stamp
    assert live_release(site.store) == new.stamp
    assert tree_of(root / "current") == expected(new)


# -- S3 against a local double (moto's server) ------------------------------------------------


@dataclass
class S3Double:
    """moto's S3 server on loopback: a double, not AWS. Its recorder logs every request."""

    url: str
    recording: Path
    proc: subprocess.Popen[bytes]

    def requests(self) -> list[tuple[str, str]]:
        lines = self.recording.read_text().splitlines() if self.recording.exists() else []
        found = []
        for line in lines:
            entry = json.loads(line)
            found.append((entry["method"], entry["url"].split("://", 1)[-1].split("/", 1)[1]))
        return found


@pytest.fixture
def s3double(tmp_path: Path, monkeypatch) -> Iterator[S3Double]:
    pytest.importorskip("moto.server")
    port = free_port()
    recording = tmp_path / "s3-requests.jsonl"
    env = {**os.environ, "MOTO_ENABLE_RECORDING": "1", "MOTO_RECORDER_FILEPATH": str(recording)}
    log = (tmp_path / "moto.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=log, stderr=log, env=env, start_new_session=True)
    for key, value in {"AWS_ACCESS_KEY_ID": "double", "AWS_SECRET_ACCESS_KEY": "double",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "moto.log").read_text()
            try:
                httpx.get(url + "/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "moto no respondió"
                time.sleep(0.1)
        yield S3Double(url, recording, proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        log.close()


@pytest.mark.slow
class TestS3OriginContract(OriginContract):
    @pytest.fixture
    def origin(self, two_cortes, s3double: S3Double) -> Iterator[Origin]:
        import boto3

        from difusor.publish.origins.s3 import S3Origin

        boto3.client("s3", endpoint_url=s3double.url).create_bucket(Bucket="contrato")
        settings = S3OriginSettings(name="cubeta", kind="s3", bucket="contrato",
                                    endpoint_url=s3double.url, region="us-east-1", retries=1,
                                    backoff=0.01)
        origin = S3Origin(settings, context(two_cortes[0]))
        yield origin
        origin.close()

    def main_json(self, origin: Origin) -> bytes | None:
        return origin.client.get_object(Bucket="contrato", Key=MAIN)["Body"].read()  # type: ignore


@pytest.mark.slow
def test_s3_uploads_with_headers_and_flips_main_json_last(s3double: S3Double, tmp_path: Path
                                                          ) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3double.url)
    s3.create_bucket(Bucket="prep")
    site = make_site(tmp_path / "difusor", origin_toml(
        "cubeta", "s3", bucket="prep", prefix="sitio", endpoint_url=s3double.url,
        region="us-east-1", retries=1, backoff=0.05))
    policy = HeaderPolicy.from_config(site.cfg)
    cortes = series(3)
    try:
        for n, corte in enumerate(cortes):
            mark = len(s3double.requests())
            out = site.publisher.publish(package(corte, tmp_path / "pk", n))
            assert out.origins == {"local": "en línea", "cubeta": "en línea"}
            puts = [p for m, p in s3double.requests()[mark:] if m == "PUT"]
            site_puts = [p for p in puts if not p.startswith("prep/sitio/_difusor/")]
            assert site_puts[-1] == f"prep/sitio/{MAIN}", site_puts  # the pointer flips last
            assert site_puts.count(f"prep/sitio/{MAIN}") == 1
            sent = {p.removeprefix("prep/sitio/") for p in site_puts}
            assert sent == (set(corte.files) if n == 0 else corte.changed), n  # only changes
        manifest = ManifestStore(site.store.manifests).load(cortes[-1].stamp)
        for path, entry in manifest.files.items():
            head = s3.head_object(Bucket="prep", Key=f"sitio/{path}")
            assert head["ContentType"] == entry.media_type, path
            want = dict((k.lower(), v) for k, v in policy.headers_for(path))["cache-control"]
            assert head["CacheControl"] == want, path
            body = s3.get_object(Bucket="prep", Key=f"sitio/{path}")["Body"].read()
            assert sha(body) == entry.sha256, path
        assert s3.head_object(Bucket="prep", Key=f"sitio/{MAIN}")["CacheControl"] == (
            "no-cache, no-store, must-revalidate")

        # A smaller full corte: what it no longer has is deleted, after the flip.
        fewer = minimal_site("08/12/2024", "23:50")
        pkg = site.write_package("20241208_2350_PREP.zip", fewer)
        cubeta = next(o for o in site.publisher.origins.origins if o.name == "cubeta")
        live = live_release(site.store)
        assert cubeta.live() == live
        removed_later = sorted(set(cortes[-1].files) - set(fewer))
        out = site.publisher.publish(pkg)
        keys = {o["Key"].removeprefix("sitio/")
                for o in s3.list_objects_v2(Bucket="prep", Prefix="sitio/")["Contents"]}
        assert keys == set(fewer) | {"_difusor/release.json"}
        deletes = [i for i, (m, p) in enumerate(s3double.requests()) if m == "POST"]
        flip = max(i for i, (m, p) in enumerate(s3double.requests())
                   if m == "PUT" and p == f"prep/sitio/{MAIN}")
        assert deletes and min(deletes) > flip and removed_later
        assert cubeta.live() == out.release_id
    finally:
        site.publisher.close()
        site.ledger.close()


@pytest.mark.slow
def test_s3_staging_cut_short_is_repaired_by_recovery(s3double: S3Double, tmp_path: Path) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3double.url)
    s3.create_bucket(Bucket="prep")
    site = make_site(tmp_path / "difusor", origin_toml(
        "cubeta", "s3", bucket="prep", endpoint_url=s3double.url, region="us-east-1"))
    old, new = series(2)
    try:
        publisher = site.publisher
        publisher.publish(package(old, tmp_path / "pk", 0))
        publisher.publish(package(new, tmp_path / "pk", 1))
        assert rollback(publisher) == old.stamp
        assert s3.get_object(Bucket="prep", Key=MAIN)["Body"].read() == old.files[MAIN]
        # What a run killed while staging `new` again leaves: changed objects uploaded, no flip.
        staged = publisher.origins.stage(publisher._release(new.stamp), old.stamp)
        assert [r.ok for r in staged.results] == [True, True]
        changed = sorted(p for p in new.changed if p != MAIN and p in old.files)
        assert changed
        assert sha(s3.get_object(Bucket="prep", Key=changed[0])["Body"].read()) == sha(
            new.files[changed[0]])  # visible before the flip: what recovery must undo
        assert (site.store.root / JOURNAL).exists()
        # The run "dies" here, its local corte `old` (as when killed before switching).
        assert live_release(site.store) == old.stamp
        with Ledger(site.state.ledger) as ledger:
            Publisher(site.cfg, ledger).recover()
        for path, data in old.files.items():
            assert s3.get_object(Bucket="prep", Key=path)["Body"].read() == data, path
        assert not (site.store.root / JOURNAL).exists()
    finally:
        site.publisher.close()
        site.ledger.close()


# -- three real origins: difusor serve, nginx here, nginx behind rsync over a real sshd --------

def _cannot_run_real_origins() -> str | None:
    if os.geteuid() != 0:
        return "hace falta root (cuenta desechable, /srv, sshd)"
    if not os.access(SSHD, os.X_OK) or not os.access(NGINX, os.X_OK):
        return "faltan sshd o nginx (make test los instala como root)"
    missing = [t for t in ("ssh", "ssh-keygen", "rsync", "useradd", "userdel", "pgrep")
               if shutil.which(t) is None]
    return f"faltan programas: {', '.join(missing)}" if missing else None


def nginx_conf(prefix: Path, port: int, root: Path) -> str:
    nobody = pwd.getpwnam("nobody")
    import grp

    group = grp.getgrgid(nobody.pw_gid).gr_name
    return f"""user nobody {group};
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    types {{ application/json json; text/html html; }}
    default_type application/octet-stream;
    client_body_temp_path {prefix}/tmp;
    access_log off;
    open_file_cache off;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location = /json/main.json {{
            add_header Cache-Control "no-cache, no-store, must-revalidate" always;
        }}
    }}
}}
"""


@dataclass
class Nginx:
    prefix: Path
    root: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = self.prefix / "nginx.conf"
        conf.write_text(nginx_conf(self.prefix, self.port, self.root))
        argv = [NGINX, "-p", str(self.prefix), "-c", str(conf), "-e", str(self.prefix / "error.log")]
        check = subprocess.run([*argv, "-t", "-q"], capture_output=True, text=True, timeout=20)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            assert self.proc.poll() is None, (self.prefix / "error.log").read_text()
            try:
                httpx.get(self.url + "/", timeout=1)
                return self
            except httpx.TransportError:
                assert time.monotonic() < deadline, "nginx no respondió"
                time.sleep(0.05)

    def stop(self) -> None:
        stop_group(self.proc)


@dataclass
class RemoteHost:
    """A throwaway account with a shell and key authentication, served by its own sshd on
    loopback; the ssh origin's remote root lives under /srv (root-owned parents, as sshd's
    StrictModes wants)."""

    base: Path
    client: Path
    user: str
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> Path:
        return self.base / "remoto"

    @property
    def key(self) -> Path:
        return self.client / "llave"

    @property
    def known_hosts(self) -> Path:
        return self.client / "known_hosts"

    def start(self) -> None:

        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.base.mkdir(mode=0o755)
        os.chmod(self.base, 0o755)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)],
                       check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(self.base / "host_key")], check=True)
        home = self.base / "home"
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", str(home),
                        "--shell", "/bin/sh", "--user-group", self.user], check=True)
        subprocess.run(["usermod", "-p", "*", self.user], check=True)  # not locked, no password
        account = pwd.getpwnam(self.user)
        for folder in (home, self.root):
            folder.mkdir(mode=0o755)
            os.chown(folder, account.pw_uid, account.pw_gid)
        keys = self.base / "keys"
        keys.mkdir(mode=0o755)
        (keys / self.user).write_text((self.client / "llave.pub").read_text())
        os.chmod(keys / self.user, 0o644)
        self.port = free_port()
        host_pub = (self.base / "host_key.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        config = self.base / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.base}/host_key\n"
            f"PidFile none\nAuthorizedKeysFile {keys}/%u\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            "AuthenticationMethods publickey\nPermitRootLogin no\n"
            f"AllowUsers {self.user}\nUsePAM no\nX11Forwarding no\nAllowTcpForwarding no\n"
            "PermitTTY no\n")
        check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.launch()

    def launch(self) -> None:
        from test_openssh import Sshd

        self.proc = Sshd.launch(self.base / "sshd_config", self.port, self.client / "sshd.log")

    def down(self) -> None:
        """The host goes away: sshd stops and every session of the account ends (the kept
        connection of the ssh origin included)."""
        from test_openssh import Sshd

        Sshd.halt(self.proc)
        found = subprocess.run(["pgrep", "-u", self.user], capture_output=True, text=True)
        for pid in found.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)

    def cleanup(self) -> None:
        self.down()
        try:
            pwd.getpwnam(self.user)
        except KeyError:
            pass
        else:
            subprocess.run(["userdel", self.user], capture_output=True)
            if subprocess.run(["getent", "group", self.user], capture_output=True).returncode == 0:
                subprocess.run(["groupdel", self.user], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[RemoteHost]:
    reason = _cannot_run_real_origins()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:8]
    client = tmp_path / "cliente"
    client.mkdir()
    host = RemoteHost(base=Path(f"/srv/difusor-origen-{tag}"), client=client, user=f"dfo{tag}")
    try:
        host.start()
        yield host
    finally:
        host.cleanup()
        with contextlib.suppress(OSError):  # the ssh origins' socket folder, when left empty
            os.rmdir(Path(tempfile.gettempdir()) / f"difusor-ssh-{os.getuid()}")
    assert not host.base.exists()
    with contextlib.suppress(KeyError):
        pwd.getpwnam(host.user)
        pytest.fail(f"the account {host.user} was not removed")


@pytest.mark.slow
class TestSshOriginContract(OriginContract):
    @pytest.fixture
    def origin(self, two_cortes, remote: RemoteHost) -> Iterator[Origin]:
        from difusor.publish.origins.ssh import SshOrigin

        settings = SshOriginSettings(
            name="remoto", kind="ssh", host="127.0.0.1", port=remote.port, user=remote.user,
            key=str(remote.key), known_hosts=str(remote.known_hosts), root=str(remote.root),
            retries=1, backoff=0.01, timeout=10)
        self.remote = remote
        origin = SshOrigin(settings, context(two_cortes[0]))
        yield origin
        origin.close()

    def main_json(self, origin: Origin) -> bytes | None:
        return (self.remote.root / "current" / MAIN).read_bytes()


@dataclass
class Reader:
    """Reads main.json from every origin, one after the other, over and over; each round is
    (start, end, origin → corte number)."""

    urls: dict[str, str]
    numbers: dict[str, int]  # sha256 of a corte's main.json → its number
    rounds: list[tuple[float, float, dict[str, int | None]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        clients = {name: httpx.Client(timeout=5) for name in self.urls}
        try:
            while not self.stop.is_set():
                seen: dict[str, int | None] = {}
                start = time.time()
                for name, url in self.urls.items():
                    try:
                        r = clients[name].get(url + "/" + MAIN)
                        seen[name] = self.numbers.get(sha(r.content)) if r.status_code == 200 \
                            else None
                    except httpx.HTTPError as exc:
                        self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                        seen[name] = None
                self.rounds.append((start, time.time(), seen))
                time.sleep(0.001)
        finally:
            for c in clients.values():
                c.close()


@pytest.mark.slow
def test_three_origins_switch_together_and_a_lost_one_catches_up(remote: RemoteHost,
                                                                 tmp_path: Path) -> None:
    web2 = remote.base / "web2"  # nginx on this host: a folder beside the store
    port = free_port()
    toml = origin_toml("web2", "nginx", root=str(web2)) + origin_toml(
        "remoto", "ssh", host="127.0.0.1", port=remote.port, user=remote.user,
        key=str(remote.key), known_hosts=str(remote.known_hosts), root=str(remote.root),
        retries=2, backoff=0.2, timeout=10)
    site = make_site(tmp_path / "difusor", toml, port=port)
    cortes = series(15, casillas=12)
    numbers = {sha(c.files[MAIN]): n for n, c in enumerate(cortes)}
    assert len(numbers) == len(cortes)
    folder = tmp_path / "pk"
    with contextlib.ExitStack() as cleanup:  # every step runs, whatever fails
        cleanup.callback(site.ledger.close)
        cleanup.callback(site.publisher.close)
        first = site.publisher.publish(package(cortes[0], folder, 0))
        assert first.origins == {"local": "en línea", "web2": "en línea", "remoto": "en línea"}
        embedded = ServerProcess(site.config_path, port).start()
        cleanup.callback(embedded.stop)
        here = Nginx(tmp_path / "nginx-web2", web2 / "current").start()
        cleanup.callback(here.stop)
        there = Nginx(tmp_path / "nginx-remoto", remote.root / "current").start()
        cleanup.callback(there.stop)
        urls = {"local": embedded.url, "web2": here.url, "remoto": there.url}
        for url in urls.values():
            r = httpx.get(url + "/" + MAIN, timeout=5)
            assert r.content == cortes[0].files[MAIN]
            assert r.headers["cache-control"] == "no-cache, no-store, must-revalidate"

        reader = Reader(urls, numbers)
        thread = threading.Thread(target=reader.run, daemon=True)
        thread.start()
        cleanup.callback(thread.join, 10)
        cleanup.callback(reader.stop.set)
        time.sleep(0.2)
        windows: list[tuple[int, float, float]] = []
        for n in range(1, 13):  # twelve back-to-back publications
            out = site.publisher.publish(package(cortes[n], folder, n))
            assert out.origins == {"local": "en línea", "web2": "en línea",
                                   "remoto": "en línea"}, out.message
            assert out.switch_window is not None
            windows.append((n, *out.switch_window))
        time.sleep(0.2)
        reader.stop.set()
        thread.join(timeout=10)

        # What a reader saw: never one origin two cortes ahead of another, and one ahead only
        # while the switch window of that corte was open.
        assert not reader.errors, reader.errors[:5]
        assert len(reader.rounds) >= 200, len(reader.rounds)
        window_of = {n: (start, end) for n, start, end in windows}
        split, outside = 0, []
        for start, end, seen in reader.rounds:
            got = list(seen.values())
            assert None not in got, seen
            newest, oldest = max(got), min(got)  # type: ignore[type-var]
            assert newest - oldest <= 1, f"two cortes apart: {seen}"
            if newest != oldest:
                split += 1
                w_start, w_end = window_of[newest]
                if end < w_start or start > w_end:
                    outside.append((start, end, seen, (w_start, w_end)))
        assert not outside, f"split reads outside the switch window: {outside[:3]}"
        assert {max(s.values()) for _, _, s in reader.rounds} >= set(range(1, 13))  # type: ignore
        ms = sorted((end - start) * 1000 for _, start, end in windows)
        recorded = [e["detail"]["ms"] for e in events(site.ledger, "switch_window")]
        assert len(recorded) == 13
        print(f"\nswitch window over 3 origins (ms): min {ms[0]:.1f}, median "
              f"{statistics.median(ms):.1f}, max {ms[-1]:.1f}; {len(reader.rounds)} rounds read, "
              f"{split} caught mid-switch")
        per_origin = {}
        for e in events(site.ledger, "origin_switched"):
            per_origin.setdefault(e["detail"]["origin"], []).append(e["detail"]["ms"])
        staged = {}
        for e in events(site.ledger, "origin_staged"):
            staged.setdefault(e["detail"]["origin"], []).append(e["detail"]["ms"])
        print("switch ms per origin (median): " + ", ".join(
            f"{k} {statistics.median(v):.1f}" for k, v in per_origin.items()))
        print("stage ms per origin (median): " + ", ".join(
            f"{k} {statistics.median(v):.1f}" for k, v in staged.items()))
        laps = [e["detail"] for e in events(site.ledger, "timings")]
        print("materialise before activation (median ms): "
              f"{statistics.median(d['materializado'] for d in laps[1:]) * 1000:.1f}")

        # rsync --link-dest: the remote releases share what did not change, and each is exact.
        for n in (11, 12):
            assert tree_of(remote.root / "releases" / cortes[n].stamp) == expected(cortes[n])
        static = next(p for p in cortes[12].files if p not in cortes[12].changed)
        a, b = (remote.root / "releases" / cortes[n].stamp / static for n in (11, 12))
        assert a.stat().st_ino == b.stat().st_ino
        remote_staged = [e["detail"] for e in events(site.ledger, "origin_staged")
                         if e["detail"]["origin"] == "remoto"]
        assert remote_staged[-1]["files_sent"] < remote_staged[-1]["files"]
        variants = [e["detail"] for e in events(site.ledger, "origin_variants")
                    if e["detail"]["origin"] == "remoto"]
        assert len(variants) == 13 and all("error" not in d for d in variants)
        for path in cortes[12].changed:  # made after the switch, sent after it
            if path.endswith(".json"):
                gz = remote.root / "current" / (path + ".gz")
                assert gz.exists() and gzip.decompress(gz.read_bytes()) == cortes[12].files[path]

        # The remote host goes away: it is retried, taken out, and the others still switch.
        remote.down()
        started = time.monotonic()
        out = site.publisher.publish(package(cortes[13], folder, 13))
        took = time.monotonic() - started
        assert out.origins == {"local": "en línea", "web2": "en línea",
                               "remoto": "fuera de rotación"}, out.message
        gone = events(site.ledger, "origin_out")[-1]
        assert gone["detail"]["origin"] == "remoto" and gone["detail"]["attempts"] == 3
        assert "fuera de rotación" in gone["message"]
        for name in ("local", "web2"):
            assert httpx.get(urls[name] + "/" + MAIN, timeout=5).content == cortes[13].files[MAIN]
        assert httpx.get(there.url + "/" + MAIN, timeout=5).content == cortes[12].files[MAIN]
        assert tree_of(remote.root / "current") == expected(cortes[12])  # whole, if behind
        print(f"publish with the remote host down: {took:.2f} s (2 retries, backoff 0.2 s)")

        # It is back: the next publication brings it up to date.
        remote.launch()
        out = site.publisher.publish(package(cortes[14], folder, 14))
        assert out.origins == {"local": "en línea", "web2": "en línea", "remoto": "en línea"}
        back = events(site.ledger, "origin_back")
        assert [(e["detail"]["origin"], e["release_id"]) for e in back] == [
            ("remoto", cortes[14].stamp)]
        for url in urls.values():
            assert httpx.get(url + "/" + MAIN, timeout=5).content == cortes[14].files[MAIN]
        assert tree_of(remote.root / "current") == expected(cortes[14])
        assert site.ledger.origins_out() == set()

        # Rolling back moves all three.
        assert rollback(site.publisher) == cortes[13].stamp
        for url in urls.values():
            assert httpx.get(url + "/" + MAIN, timeout=5).content == cortes[13].files[MAIN]

        # Collection prunes the remote releases as well (the live one stays).
        collect_cortes(site.publisher, keep=2)
        kept = {p.name for p in (remote.root / "releases").iterdir()}
        assert kept == {cortes[13].stamp, cortes[14].stamp}, kept
        assert events(site.ledger, "gc")[-1]["detail"]["origins"] == {"web2": 13, "remoto": 13}


@pytest.mark.slow
def test_a_killed_publish_leaves_the_remote_whole_and_recovery_aligns_it(remote: RemoteHost,
                                                                         tmp_path: Path) -> None:
    toml = origin_toml("remoto", "ssh", host="127.0.0.1", port=remote.port, user=remote.user,
                       key=str(remote.key), known_hosts=str(remote.known_hosts),
                       root=str(remote.root), retries=1, backoff=0.1, timeout=10)
    site = make_site(tmp_path / "difusor", toml)
    old, new = series(2)
    pkg = package(new, tmp_path / "pk", 1)

    def killed_at(where: str, when: str) -> None:
        proc = subprocess.run(
            [sys.executable, "-c", _KILLER, where, when, "1", "publish", str(pkg), "--config",
             str(site.config_path)], capture_output=True, env=SUBPROCESS_ENV, timeout=120)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]

    def remote_live() -> str:
        return os.readlink(remote.root / "current").removeprefix("releases/")

    try:
        site.publisher.publish(package(old, tmp_path / "pk", 0))
        # Staged everywhere, the switch command armed and waiting: the run dies. The command
        # reads end-of-file and changes nothing.
        killed_at("difusor.publish.origins.twophase:OriginSet.stage", "after")
        # The end-of-file travels from the dead run's pipe through ssh's shared connection to
        # the remote shell, which then removes its prepared link. Usually milliseconds; in two
        # full-suite runs it had not arrived after 30 s (not understood yet: see the closing
        # note of issues 21/23). The link is harmless (the next switch replaces it, ln -sfn):
        # what must hold is that "current" never moved.
        deadline = time.monotonic() + 10
        while list(remote.root.glob(".current.*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert remote_live() == old.stamp == live_release(site.store)
        assert set(remote.root.glob(".current.*")) <= {remote.root / f".current.{new.stamp}.tmp"}
        assert tree_of(remote.root / "releases" / new.stamp) == expected(new)  # staged whole
        # The remote switched, then the run died: recovery brings it back to the local corte.
        killed_at("difusor.publish.origins.ssh:SshOrigin._switch", "after")
        assert remote_live() in (old.stamp, new.stamp)
        assert tree_of(remote.root / "current") == expected(old if remote_live() == old.stamp
                                                            else new)
        site.publisher.recover()
        assert remote_live() == live_release(site.store)
        again = site.publisher.publish(pkg)
        assert again.release_id == new.stamp and remote_live() == new.stamp
        assert tree_of(remote.root / "current") == expected(new)
    finally:
        site.publisher.close()
        site.ledger.close()


@pytest.mark.slow
def test_s3_failing_half_way_is_put_back_whole_then_catches_up(s3double: S3Double, tmp_path: Path,
                                                              monkeypatch) -> None:
    import boto3

    from difusor.publish.origins.s3 import S3Origin

    s3 = boto3.client("s3", endpoint_url=s3double.url)
    s3.create_bucket(Bucket="prep")
    site = make_site(tmp_path / "difusor", origin_toml(
        "cubeta", "s3", bucket="prep", endpoint_url=s3double.url, region="us-east-1",
        retries=0))
    old, new, newer = series(3)
    real_put = S3Origin._put
    calls = itertools.count(1)  # next() is atomic: uploads run in eight threads
    seen: list[int] = []

    def flaky_put(self, path, entry):  # the network goes away after three objects
        n = next(calls)
        seen.append(n)
        if n == 4:
            raise OriginError("origen cubeta: se cayó la red (doble)")
        return real_put(self, path, entry)

    try:
        site.publisher.publish(package(old, tmp_path / "pk", 0))
        monkeypatch.setattr(S3Origin, "_put", flaky_put)
        out = site.publisher.publish(package(new, tmp_path / "pk", 1))
        assert out.origins == {"local": "en línea", "cubeta": "fuera de rotación"}
        assert max(seen) > 4  # some objects of `new` went up before the failure, then back
        for path, data in old.files.items():
            assert s3.get_object(Bucket="prep", Key=path)["Body"].read() == data, path
        assert events(site.ledger, "origin_restored")[-1]["release_id"] == old.stamp

        monkeypatch.setattr(S3Origin, "_put", real_put)
        out = site.publisher.publish(package(newer, tmp_path / "pk", 2))
        assert out.origins == {"local": "en línea", "cubeta": "en línea"}
        for path, data in newer.files.items():
            assert s3.get_object(Bucket="prep", Key=path)["Body"].read() == data, path
        assert events(site.ledger, "origin_back")[-1]["release_id"] == newer.stamp
    finally:
        site.publisher.close()
        site.ledger.close()
