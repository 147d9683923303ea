"""Activation is atomic as readers see it: a real ``difusor serve`` (2 workers) under publishes.

Readers hammer the server while 50+ cortes are published back to back. A reader must never get
a torn file, never a mix (a body from one corte under another corte's header), and never go back
in time: once a client saw corte k's ``main.json``, everything it fetches afterwards is corte k's
or newer. Some readers keep one connection (one worker); others open a fresh connection per
request and so hop between workers, which only stay in step through the generation counter.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess, Site

import difusor.publish.publisher as pipeline_mod
from difusor.demo.election import DATABASE, SyntheticElection
from difusor.demo.packages import write_package

CORTES = 12  # first full, then 11 incrementals, published back to back
CASILLAS = 36  # every casilla file carries its corte's time: they change every corte
READERS_KEEPALIVE = 3
READERS_FRESH = 3
TAIL_SECONDS = 0.3  # keep reading a little after the last publish

pytestmark = pytest.mark.timeout(150)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Hit:
    seq: int
    path: str  # site path without the leading slash, or "_health"
    status: int
    digest: str | None  # sha256 of the (decoded) body
    corte_header: str | None
    body_note: str | None = None  # health: "<release> <worker>"; main.json: numeroCorte


@dataclass
class Reader:
    name: str
    fresh: bool  # a new connection per request (hops between workers)
    identity: bool  # ask for identity encoding (the others take br/gzip as offered)
    hits: list[Hit] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class Series:
    numbers: dict[str, int]  # release id (corte stamp) → corte number
    versions: dict[str, dict[str, set[int]]]  # path → sha256 → corte numbers with those bytes
    packages: list[Path]


def build_series(folder: Path) -> Series:
    cortes = list(SyntheticElection(casillas=CASILLAS).cortes(CORTES))
    versions: dict[str, dict[str, set[int]]] = {}
    for corte in cortes:
        for path, data in corte.files.items():
            versions.setdefault(path, {}).setdefault(sha(data), set()).add(corte.number)
    casilla_paths = [p for p in cortes[-1].files if p.startswith("json/casillas/")]
    changing = [p for p in casilla_paths if len(versions[p]) > 1]
    assert len(changing) == len(casilla_paths), "the series must change casilla files every corte"
    packages = [
        write_package(c, folder, kind="full" if c.number == 1 else "incremental") for c in cortes
    ]
    return Series({c.stamp: c.number for c in cortes}, versions, packages)


def read_loop(reader: Reader, url: str, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    headers = {"Accept-Encoding": "identity"} if reader.identity else {}
    if reader.fresh:
        headers["Connection"] = "close"
        limits = httpx.Limits(max_keepalive_connections=0)
    else:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    seq = 0
    with httpx.Client(base_url=url, timeout=10, limits=limits, headers=headers) as client:

        def get(path: str, url_path: str | None = None) -> bytes | None:
            nonlocal seq
            seq += 1
            try:
                r = client.get(url_path or "/" + path)
            except httpx.HTTPError as exc:
                reader.errors.append(f"#{seq} GET /{path}: {type(exc).__name__}: {exc}")
                return None
            body = r.content
            hit = Hit(seq, path, r.status_code, sha(body), r.headers.get("x-difusor-corte"))
            reader.hits.append(hit)
            if path == "_health":
                hit.body_note = body.decode(errors="replace").strip()
            elif path == "json/main.json" and r.status_code == 200:
                try:
                    hit.body_note = str(json.loads(body)["numeroCorte"])
                except (ValueError, KeyError) as exc:
                    hit.body_note = f"unparsable: {exc}"
            return body if r.status_code == 200 else None

        while not stop.is_set():
            main = get("json/main.json")
            casillas: list[str] = []
            if main is not None:
                try:
                    casillas = json.loads(main)["casillas"]
                except (ValueError, KeyError):
                    casillas = []
            for key in rng.sample(casillas, min(2, len(casillas))):
                get(f"json/casillas/{key}.json")
            if rng.random() < 0.5:
                get("index.html", "/")
            else:
                get("index.html")
            get(DATABASE)
            get("_health", "/_difusor/health")


def check_reader(reader: Reader, series: Series) -> list[str]:
    """Every rule a client's view must obey; returns the violations (empty when all is well)."""
    problems: list[str] = []
    newest_main = 0  # highest corte whose main.json this client has seen
    newest_any = 0  # highest corte named by any answer (header, health) so far
    for hit in reader.hits:
        where = f"{reader.name} #{hit.seq} /{hit.path}"
        if hit.path == "_health":
            parts = (hit.body_note or "").split()
            if hit.status != 200 or len(parts) != 3 or parts[0] != "ok":
                problems.append(f"{where}: health answered {hit.status} {hit.body_note!r}")
                continue
            n = series.numbers.get(parts[1])
            if n is None:
                problems.append(f"{where}: health names unknown release {parts[1]}")
                continue
            if n < newest_any:
                problems.append(f"{where}: health says corte {n} after corte {newest_any} was seen")
            newest_any = max(newest_any, n)
            continue
        if hit.status != 200:
            problems.append(f"{where}: status {hit.status} (header {hit.corte_header})")
            continue
        known = series.versions[hit.path].get(hit.digest or "")
        if known is None:
            problems.append(f"{where}: body matches no corte's version of this file (torn?)")
            continue
        header_n = series.numbers.get(hit.corte_header or "")
        if header_n is None:
            problems.append(f"{where}: X-Difusor-Corte {hit.corte_header!r} is no published corte")
            continue
        if header_n not in known:
            problems.append(
                f"{where}: header says corte {header_n} but the body is corte(s) {sorted(known)}'s"
            )
        if header_n < newest_any:
            problems.append(f"{where}: header corte {header_n} after corte {newest_any} was seen")
        newest_any = max(newest_any, header_n)
        if max(known) < newest_main:
            problems.append(
                f"{where}: body is corte(s) {sorted(known)}'s after main.json of corte "
                f"{newest_main} was seen"
            )
        if hit.path == "json/main.json":
            (k,) = known  # main.json differs in every corte
            if hit.body_note != str(k):
                problems.append(f"{where}: numeroCorte {hit.body_note} in corte {k}'s main.json")
            if k < newest_main:
                problems.append(f"{where}: main.json of corte {k} after corte {newest_main}")
            newest_main = max(newest_main, k)
    return problems


def test_the_checker_catches_torn_mixed_and_backward_reads() -> None:
    """The rules above, on made-up answers: a checker that passes everything proves nothing."""
    m1, m2, c1, c2 = b'{"numeroCorte": 1}', b'{"numeroCorte": 2}', b"casilla 1", b"casilla 2"
    series = Series(
        {"A": 1, "B": 2},
        {"json/main.json": {sha(m1): {1}, sha(m2): {2}},
         "json/casillas/X.json": {sha(c1): {1}, sha(c2): {2}},
         "index.html": {sha(b"same"): {1, 2}}},
        [],
    )

    def reader(*hits: tuple[str, bytes, str]) -> Reader:
        r = Reader("t", fresh=True, identity=True)
        for seq, (path, body, header) in enumerate(hits, start=1):
            note = None
            if path == "json/main.json":
                note = str(json.loads(body)["numeroCorte"])
            elif path == "_health":
                note = body.decode()
            r.hits.append(Hit(seq, path, 200, sha(body), header, note))
        return r

    good = reader(("json/main.json", m1, "A"), ("json/casillas/X.json", c1, "A"),
                  ("index.html", b"same", "A"), ("json/main.json", m2, "B"),
                  ("index.html", b"same", "B"), ("json/casillas/X.json", c2, "B"),
                  ("_health", b"ok B w1", ""))
    assert check_reader(good, series) == []
    torn = reader(("json/casillas/X.json", c1[:4], "A"))
    assert "torn" in check_reader(torn, series)[0]
    mixed = reader(("json/casillas/X.json", c2, "A"))
    assert "header says corte 1" in check_reader(mixed, series)[0]
    backward = reader(("json/main.json", m2, "B"), ("json/casillas/X.json", c1, "A"))
    problems = check_reader(backward, series)
    assert any("after main.json of corte 2" in p for p in problems), problems
    assert any("header corte 1 after corte 2" in p for p in problems), problems
    health_back = reader(("json/main.json", m2, "B"), ("_health", b"ok A w2", ""))
    assert "health says corte 1" in check_reader(health_back, series)[0]


@pytest.mark.slow
def test_readers_never_see_a_torn_file_or_go_back_in_time(
    site: Site, server: ServerProcess, tmp_path: Path
) -> None:
    series = build_series(tmp_path / "paquetes")
    first = site.publisher.publish(series.packages[0])
    assert first.status == "published"
    deadline = time.monotonic() + 10
    while httpx.get(server.url + "/json/main.json").status_code != 200:
        assert time.monotonic() < deadline, "the server never served the first corte"
        time.sleep(0.02)

    readers = [Reader(f"keepalive{i}", fresh=False, identity=i % 2 == 1)
               for i in range(READERS_KEEPALIVE)]
    readers += [Reader(f"fresh{i}", fresh=True, identity=i % 2 == 0) for i in range(READERS_FRESH)]
    stop = threading.Event()
    threads = [threading.Thread(target=read_loop, args=(r, server.url, stop, n), daemon=True)
               for n, r in enumerate(readers)]
    for t in threads:
        t.start()
    published = 1
    started = time.monotonic()
    try:
        for pkg in series.packages[1:]:
            out = site.publisher.publish(pkg)
            assert out.status == "published" and out.kind == "incremental", out.message
            published += 1
        publishing = time.monotonic() - started
        time.sleep(TAIL_SECONDS)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a reader did not stop"

    requests = sum(len(r.hits) + len(r.errors) for r in readers)
    mains = Counter(h.body_note for r in readers for h in r.hits if h.path == "json/main.json")
    tokens = {r.name: {h.body_note.split()[-1] for h in r.hits
                       if h.path == "_health" and h.body_note and len(h.body_note.split()) == 3}
              for r in readers}
    summary = (
        f"{published} cortes published ({published - 1} back to back in {publishing:.2f} s); "
        f"{requests} requests by "
        f"{len(readers)} readers ({', '.join(f'{r.name}={len(r.hits)}' for r in readers)}); "
        f"main.json seen in {len(mains)} distinct cortes; workers per reader "
        f"{ {n: len(t) for n, t in tokens.items()} }"
    )
    print(summary)

    errors = [e for r in readers for e in r.errors]
    assert not errors, f"{len(errors)} failed requests of {requests}: {errors[:5]}; {summary}"
    problems = [p for r in readers for p in check_reader(r, series)]
    assert not problems, f"{len(problems)} violations in {requests} requests: {problems[:10]}; {summary}"
    assert published >= CORTES
    assert all(len(r.hits) >= 50 for r in readers), summary
    assert len(mains) >= 8, f"readers saw too few cortes to prove anything; {summary}"
    fresh_tokens = set().union(*(tokens[r.name] for r in readers if r.fresh))
    assert len(fresh_tokens) >= 2, f"fresh-connection readers never hopped between workers; {summary}"


@pytest.mark.slow
def test_every_worker_serves_a_new_activation_quickly(
    site: Site, server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cortes = list(SyntheticElection(casillas=24).cortes(7))
    packages = [write_package(c, tmp_path / "pk", kind="full" if c.number == 1 else "incremental")
                for c in cortes]
    site.publisher.publish(packages[0])

    def health(client: httpx.Client) -> tuple[str, str]:
        r = client.get("/_difusor/health")
        ok, release, worker = r.text.split()
        assert r.status_code == 200 and ok == "ok", r.text
        return release, worker

    fresh = {"headers": {"Connection": "close"},
             "limits": httpx.Limits(max_keepalive_connections=0)}
    with httpx.Client(base_url=server.url, timeout=5, **fresh) as client:
        workers: set[str] = set()
        deadline = time.monotonic() + 10
        while len(workers) < 2:
            assert time.monotonic() < deadline, f"only workers {workers} ever answered"
            release, worker = health(client)
            if release == cortes[0].stamp:
                workers.add(worker)

        activated_at: dict[str, float] = {}
        live_at: dict[str, float] = {}
        real_activate = pipeline_mod.activate

        def timed_activate(layout, release_id, **kw):  # type: ignore[no-untyped-def]
            generation = real_activate(layout, release_id, **kw)
            activated_at[release_id] = time.monotonic()
            return generation

        monkeypatch.setattr(pipeline_mod, "activate", timed_activate)
        latencies: list[float] = []
        for corte, pkg in zip(cortes[1:], packages[1:], strict=True):
            live = threading.Event()

            def on_live(outcome, live=live):  # type: ignore[no-untyped-def]
                live_at[outcome.release_id] = time.monotonic()
                live.set()

            failure: list[BaseException] = []

            def run(pkg=pkg, on_live=on_live, failure=failure) -> None:  # type: ignore[no-untyped-def]
                try:
                    site.publisher.publish(pkg, on_live=on_live)
                except BaseException as exc:
                    failure.append(exc)

            publisher = threading.Thread(target=run)
            publisher.start()
            try:
                assert live.wait(20), f"publishing {corte.stamp} never went live: {failure}"
                t0 = activated_at[corte.stamp]
                seen: dict[str, str] = {}
                while True:
                    release, worker = health(client)
                    now = time.monotonic()
                    seen[worker] = release
                    if sum(1 for r in seen.values() if r == corte.stamp) >= 2:
                        break
                    assert now - t0 < 1.0, (
                        f"corte {corte.stamp}: 1 s after activation the workers answer {seen}"
                    )
                latencies.append(now - t0)
                r = client.get("/json/main.json")
                assert r.headers["x-difusor-corte"] == corte.stamp
                assert r.content == corte.files["json/main.json"]
            finally:
                publisher.join(timeout=30)
            assert not failure, failure
        spread = [live_at[c.stamp] - activated_at[c.stamp] for c in cortes[1:]]
    print(
        "activation → every worker serving it: "
        + ", ".join(f"{x * 1000:.1f}" for x in latencies)
        + f" ms (max {max(latencies) * 1000:.1f} ms); activate → on_live "
        + f"{max(spread) * 1000:.1f} ms at most"
    )
    assert len(latencies) == len(cortes) - 1
