"""The public chain of cortes and ``difusor verify``: a night of cortes (rollback included) gives
a chain that verify accepts; a forged, reordered, removed or wrongly signed entry is caught and
named; so is one flipped byte in what a visitor gets, and a package the chain does not hold."""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Site, minimal_site
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from difusor.integrity.chain import GENESIS, entry_hash, live_entry, problems
from difusor.integrity.merkle import root
from difusor.integrity.published import manifest_root
from difusor.integrity.signing import fingerprint, key_path, load_or_create, public_b64, sign
from difusor.publish.activate import live_release
from difusor.publish.rollback import rollback
from difusor.publish.takedown import takedown


def night(site: Site) -> list[str]:
    """Three cortes, a rollback to the second, a fourth: the ids published, in order."""
    ids = []
    for hora in ("20:30", "20:40", "20:50"):
        package = site.write_package(f"2024120{8}_{hora.replace(':', '')}_PREP.zip",
                                     minimal_site(hora=hora, extra={"app.js": hora.encode() * 50}))
        ids.append(site.publisher.publish(package).release_id)
    rollback(site.publisher)
    package = site.write_package("20241208_2100_PREP.zip", minimal_site(
        hora="21:00", extra={"app.js": b"console.log(21);" * 40}))
    ids.append(site.publisher.publish(package).release_id)
    return ids


def published(site: Site) -> dict:
    return json.loads((site.state.integrity / "cortes.json").read_bytes())


def test_the_merkle_root_is_the_documented_construction() -> None:
    files = {"b.json": hashlib.sha256(b"b").hexdigest(), "a.html": hashlib.sha256(b"a").hexdigest(),
             "c/d.js": hashlib.sha256(b"c").hexdigest()}

    def leaf(p: str) -> bytes:
        return hashlib.sha256(b"\x00" + p.encode() + b"\x00" + bytes.fromhex(files[p])).digest()

    a, b, c = leaf("a.html"), leaf("b.json"), leaf("c/d.js")
    ab = hashlib.sha256(b"\x01" + a + b).digest()
    assert root(files.items()) == hashlib.sha256(b"\x01" + ab + c).hexdigest()  # c carried up
    assert root([]) == hashlib.sha256(b"").hexdigest()
    assert root([("a", "00" * 32)]) != root([("b", "00" * 32)])


def test_a_night_of_cortes_gives_one_signed_chain(site: Site) -> None:
    ids = night(site)
    entries = site.ledger.chain()
    assert [e["kind"] for e in entries] == ["publish"] * 3 + ["rollback", "publish"]
    assert [e["corte"] for e in entries] == [*ids[:3], ids[1], ids[3]]
    assert entries[0]["prev"] == GENESIS and entries[3]["prev"] == entries[2]["hash"]
    doc = published(site)
    assert doc["entradas"] == entries and doc["total"] == 5
    assert problems(doc["entradas"], doc["llave_publica"]) == []
    # The key is the difusor's own, made on first use, 0600; the kit states its fingerprint.
    key = key_path(site.cfg)
    assert key.stat().st_mode & 0o077 == 0
    assert doc["llave_publica"] == public_b64(load_or_create(key))
    assert doc["huella"] == fingerprint(doc["llave_publica"])
    live = live_entry(entries)
    assert live is not None and live["corte"] == live_release(site.store)
    manifest = site.publisher.manifests.load(live["corte"])
    assert live["manifest_root"] == manifest_root(manifest)
    assert live["package_sha256"] == manifest.package_sha256
    served = json.loads((site.state.integrity / "manifest" / f"{live['corte']}.json")
                        .read_bytes())
    assert root((f[0], f[1]) for f in served["archivos"]) == live["manifest_root"]
    assert live["received_at"] <= live["live_at"]


def test_the_takedown_closes_the_chain(site: Site) -> None:
    from datetime import UTC, datetime

    night(site)
    now = datetime.now(UTC)
    takedown(site.cfg, site.ledger, now=now, allowed_from=now)
    entries = site.ledger.chain()
    assert entries[-1]["kind"] == "takedown" and entries[-1]["corte"] is None
    assert live_entry(entries) is None
    assert problems(entries, published(site)["llave_publica"]) == []


def _resign(entry: dict, key: Ed25519PrivateKey) -> dict:
    body = {k: v for k, v in entry.items() if k not in ("hash", "sig")}
    digest = entry_hash(body)
    return {**body, "hash": digest, "sig": sign(key, bytes.fromhex(digest))}


def test_every_kind_of_tampering_with_the_chain_is_caught(site: Site) -> None:
    night(site)
    doc = published(site)
    entries, public = doc["entradas"], doc["llave_publica"]

    forged = copy.deepcopy(entries)
    forged[2]["manifest_root"] = "0" * 64
    assert any("entrada 3" in p and "alterada" in p for p in problems(forged, public))

    swapped = copy.deepcopy(entries)
    swapped[1], swapped[2] = swapped[2], swapped[1]
    found = problems(swapped, public)
    assert any("entrada 2" in p and "secuencia" in p for p in found)
    assert any("no enlaza" in p for p in found)

    removed = entries[:2] + entries[3:]
    assert any("entrada 3" in p and ("secuencia" in p or "no enlaza" in p)
               for p in problems(removed, public))

    other = Ed25519PrivateKey.generate()
    resigned = copy.deepcopy(entries)
    resigned[4] = _resign({**resigned[4], "corte": "20241208_2359"}, other)
    assert any("entrada 5" in p and "firma" in p for p in problems(resigned, public))

    # A whole chain forged under another key holds by itself: pinning the kit's key catches it.
    chain, prev = [], GENESIS
    for e in entries:
        e = _resign({**e, "prev": prev}, other)
        chain.append(e)
        prev = e["hash"]
    assert problems(chain, public_b64(other)) == []
    assert problems(chain, public) != []


@pytest.mark.slow
def test_endpoints_serve_the_chain_with_the_no_cache_rule(site: Site, server) -> None:
    import httpx

    night(site)
    live = live_release(site.store)
    for path, file in (("/_difusor/cortes.json", "cortes.json"),
                       (f"/_difusor/manifest/{live}.json", f"manifest/{live}.json")):
        r = httpx.get(server.url + path)
        assert r.status_code == 200, path
        assert r.headers["cache-control"] == "no-cache, no-store, must-revalidate"
        assert r.headers["content-type"] == "application/json"
        assert r.content == (site.state.integrity / file).read_bytes()
    for missing in ("/_difusor/manifest/no-existe.json", "/_difusor/manifest/../ledger.json",
                    "/_difusor/cortes/1.json"):
        assert httpx.get(server.url + missing).status_code == 404, missing


def _verify(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "difusor", "verify", url, *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_verify_accepts_the_night_and_catches_a_rewritten_chain(site: Site, server) -> None:
    night(site)
    done = _verify(server.url, "--all", "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["ok"], report
    assert report["entries"] == 5 and report["checked"] == report["files"] == 3
    pinned = _verify(server.url, "--key", published(site)["huella"])
    assert pinned.returncode == 0 and "✔ verificado" in pinned.stdout

    # The published chain edited on disk (an attacker with the origin's files): caught.
    path = site.state.integrity / "cortes.json"
    original = path.read_bytes()
    doc = json.loads(original)
    doc["entradas"][1]["package_sha256"] = "f" * 64
    path.write_text(json.dumps(doc))
    try:
        done = _verify(server.url)
        assert done.returncode == 1
        assert "entrada 2" in done.stderr and "alterada" in done.stderr
    finally:
        path.write_bytes(original)


@pytest.mark.slow
def test_verify_package_holds_for_the_authoritys_zip_and_fails_for_another(
        site: Site, server, tmp_path: Path) -> None:
    night(site)
    original = site.root / "incoming-packages" / "20241208_2100_PREP.zip"
    done = _verify(server.url, "--package", str(original), "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 0, report["problems"]
    assert report["package"]["corte"] == live_release(site.store)
    assert report["package"]["diferencias"] == []

    other = site.write_package("20241208_2110_PREP.zip", minimal_site(hora="21:10"))
    done = _verify(server.url, "--package", str(other))
    assert done.returncode == 1 and "no aparece en la cadena" in done.stderr


@pytest.mark.slow
def test_the_monitor_runs_the_same_check_and_a_forged_chain_is_an_integrity_failure(
        site: Site, server) -> None:
    from difusor.monitor.service import Monitor

    night(site)
    monitor = Monitor(site.cfg, site.ledger)
    [result] = monitor.check_once()
    assert result.ok and result.detail["chain"]["ok"] is True
    assert result.detail["chain"]["entries"] == 5

    path = site.state.integrity / "cortes.json"
    original = path.read_bytes()
    doc = json.loads(original)
    doc["entradas"][0]["corte_time"] = "2024-12-08T20:31:00-06:00"
    path.write_text(json.dumps(doc))
    try:
        [result] = monitor.check_once()
    finally:
        path.write_bytes(original)
    assert not result.ok and result.failure == "integrity"
    assert "verificación pública" in result.message and "entrada 1" in result.message
    rows = site.ledger.probes()
    assert rows[-1]["failure"] == "integrity" and rows[-1]["detail"]["chain"]["ok"] is False

    # The memoria states the chain's head and the verifications made, with their result.
    from datetime import UTC, datetime, timedelta

    from difusor.report.integrity import integrity_doc

    now = datetime.now(UTC)
    doc = integrity_doc(site.cfg, site.ledger, now - timedelta(hours=1), now + timedelta(1))
    head = site.ledger.chain_head()
    assert head is not None
    assert doc["cabeza"]["seq"] == 5 and doc["cabeza"]["hash"] == head["hash"]
    assert doc["entradas"] == doc["en_periodo"] == 5 and doc["huella"].startswith("SHA256:")
    assert doc["verificaciones"] == {"hechas": 2, "fallidas": 1, "puntos": 1}


def test_a_simulacro_reset_is_an_entry_and_the_next_simulacro_carries_the_chain_on(
        site: Site) -> None:
    from difusor.publish.clear import clear_site

    night(site)
    clear_site(site.publisher, by="prueba")
    package = site.write_package("20241208_2200_PREP.zip", minimal_site(hora="22:00"))
    site.publisher.publish(package)
    entries = site.ledger.chain()
    assert [e["kind"] for e in entries[-2:]] == ["reset", "publish"]
    assert live_entry(entries[:-1]) is None and live_entry(entries)["corte"] == "20241208_2200"
    assert problems(entries, published(site)["llave_publica"]) == []


def test_a_chain_that_cannot_be_written_never_undoes_a_publication(tmp_path: Path) -> None:
    from conftest import make_site

    # The key's folder is a file: the entry cannot be signed.
    site = make_site(tmp_path / "d", '\n[integrity]\nkey = "difusor.toml/llave"\n')
    try:
        package = site.write_package("20241208_2030_PREP.zip", minimal_site())
        outcome = site.publisher.publish(package)
        assert outcome.status == "published" and live_release(site.store) == outcome.release_id
        [failed] = site.ledger.events("integrity_failed")
        assert "cadena pública" in failed["message"]
        assert site.ledger.chain() == []
    finally:
        site.ledger.close()
