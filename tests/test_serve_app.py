"""The embedded server's answers, in-process: what a browser, a CDN or a curious visitor gets."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import brotli
import pytest
from conftest import Site, make_site, minimal_site
from rsgi_client import request

from difusor.serve.app import build_app

MAIN_CC = "no-cache, no-store, must-revalidate"


@pytest.fixture
def live(site: Site, cortes: list):
    """A site with one synthetic corte live and its variants made; returns (site, app, files)."""
    from difusor.demo.packages import write_package

    corte = cortes[2]
    site.publisher.publish(write_package(corte, site.root / "pk"))
    return site, build_app(site.cfg), corte.files


def test_every_file_is_served_byte_identical_with_its_media_type(live) -> None:
    _site, app, files = live
    types = {".json": "application/json", ".html": "text/html", ".js": "text/javascript",
             ".css": "text/css", ".svg": "image/svg+xml", ".zip": "application/zip"}
    for path, data in files.items():
        r = request(app, "/" + path)
        assert r.status == 200, path
        assert r.body == data, path
        ext = path[path.rfind("."):]
        assert r.header("Content-Type") == types[ext], path


def test_main_json_has_exactly_the_required_cache_control(live) -> None:
    _, app, _ = live
    for enc in ("", "gzip", "br"):
        r = request(app, "/json/main.json", headers={"Accept-Encoding": enc} if enc else None)
        assert r.header("Cache-Control") == MAIN_CC
    r = request(app, "/json/main.json", method="HEAD")
    assert r.header("Cache-Control") == MAIN_CC
    etag = request(app, "/json/main.json").header("ETag")
    r = request(app, "/json/main.json", headers={"If-None-Match": etag})
    assert r.status == 304 and r.header("Cache-Control") == MAIN_CC


def test_other_files_get_the_policy_defaults(live) -> None:
    _, app, _ = live
    assert request(app, "/index.html").header("Cache-Control") == "no-cache"
    assert request(app, "/assets/app.js").header("Cache-Control") == "public, max-age=300"
    assert request(app, "/json/casillas/1000B1.json").header("Cache-Control") == "no-cache"
    assert request(app, "/index.html").header("X-Content-Type-Options") == "nosniff"


def test_configured_header_rules_apply_and_cannot_touch_main_json(tmp_path) -> None:
    from difusor.errors import ConfigError

    s = make_site(tmp_path / "a", extra_toml='\n[[headers]]\nmatch = "*.zip"\n'
                  'set = { "Cache-Control" = "public, max-age=60", "X-Origen" = "difusor" }\n')
    s.publisher.publish(s.write_package("p.zip", minimal_site(extra={"datos/a.zip": b"PK"})))
    app = build_app(s.cfg)
    r = request(app, "/datos/a.zip")
    assert r.header("Cache-Control") == "public, max-age=60" and r.header("X-Origen") == "difusor"
    assert request(app, "/json/main.json").header("Cache-Control") == MAIN_CC
    with pytest.raises(ConfigError, match=r"main\.json"):
        make_site(tmp_path / "b", extra_toml='\n[[headers]]\nmatch = "json/*"\n'
                  'set = { "Cache-Control" = "max-age=600" }\n')


def test_strong_etag_and_304(live) -> None:
    _, app, files = live
    r = request(app, "/json/main.json")
    etag = r.header("ETag")
    assert etag and etag.startswith('"') and not etag.startswith("W/")
    assert etag.strip('"') == hashlib.sha256(files["json/main.json"]).hexdigest()[:24]
    assert request(app, "/json/main.json", headers={"If-None-Match": etag}).status == 304
    assert request(app, "/json/main.json", headers={"If-None-Match": "W/" + etag}).status == 304
    assert request(app, "/json/main.json", headers={"If-None-Match": '"x", ' + etag}).status == 304
    assert request(app, "/json/main.json", headers={"If-None-Match": '"other"'}).status == 200
    not_modified = request(app, "/json/main.json", headers={"If-None-Match": etag})
    assert not_modified.body == b"" and not_modified.header("ETag") == etag


def test_encodings_are_negotiated_from_precompressed_variants(live) -> None:
    _, app, files = live
    main = files["json/main.json"]
    br = request(app, "/json/main.json", headers={"Accept-Encoding": "gzip, deflate, br"})
    assert br.header("Content-Encoding") == "br" and brotli.decompress(br.body) == main
    assert br.header("Vary") == "Accept-Encoding"
    gz = request(app, "/json/main.json", headers={"Accept-Encoding": "gzip"})
    assert gz.header("Content-Encoding") == "gzip" and gzip.decompress(gz.body) == main
    plain = request(app, "/json/main.json", headers={"Accept-Encoding": "identity"})
    assert plain.header("Content-Encoding") is None and plain.body == main
    assert plain.header("Vary") == "Accept-Encoding"
    refused = request(app, "/json/main.json", headers={"Accept-Encoding": "br;q=0, gzip;q=0.5"})
    assert refused.header("Content-Encoding") == "gzip"
    assert len({br.header("ETag"), gz.header("ETag"), plain.header("ETag")}) == 3
    png_like = request(app, "/datos/IRIMBO_AYUN_2024.zip", headers={"Accept-Encoding": "br"})
    assert png_like.header("Content-Encoding") is None and png_like.header("Vary") is None


def test_range_requests(live) -> None:
    _, app, files = live
    data = files["json/main.json"]
    r = request(app, "/json/main.json", headers={"Range": "bytes=0-9"})
    assert r.status == 206 and r.body == data[:10]
    assert r.header("Content-Range") == f"bytes 0-9/{len(data)}"
    assert request(app, "/json/main.json", headers={"Range": "bytes=-5"}).body == data[-5:]
    assert request(app, "/json/main.json", headers={"Range": "bytes=10-"}).body == data[10:]
    over = request(app, "/json/main.json", headers={"Range": f"bytes={len(data)}-"})
    assert over.status == 416 and over.header("Content-Range") == f"bytes */{len(data)}"
    multi = request(app, "/json/main.json", headers={"Range": "bytes=0-1,5-6"})
    assert multi.status == 200 and multi.body == data
    stale = request(app, "/json/main.json", headers={"Range": "bytes=0-9", "If-Range": '"old"'})
    assert stale.status == 200 and stale.body == data
    # A range always answers from the identity bytes, never from a compressed variant.
    ranged = request(app, "/json/main.json", headers={"Range": "bytes=0-3", "Accept-Encoding": "br"})
    assert ranged.header("Content-Encoding") is None and ranged.body == data[:4]


def test_large_files_are_served_from_disk_with_ranges(tmp_path) -> None:
    s = make_site(tmp_path / "big", extra_toml="")
    big = bytes(range(256)) * 4096  # 1 MiB
    s.publisher.publish(s.write_package("p.zip", minimal_site(extra={"datos/base.bin": big})))
    cfg = s.cfg.model_copy(update={"web": s.cfg.web.model_copy(update={"memory_max_file": 1000})})
    app = build_app(cfg)
    r = request(app, "/datos/base.bin")
    assert r.status == 200 and r.body == big and r.header("Content-Length") == str(len(big))
    part = request(app, "/datos/base.bin", headers={"Range": "bytes=1000-1999"})
    assert part.status == 206 and part.body == big[1000:2000]


def test_head_answers_like_get_without_body(live) -> None:
    _, app, _files = live
    get = request(app, "/index.html")
    head = request(app, "/index.html", method="HEAD")
    assert head.status == 200 and head.header("ETag") == get.header("ETag")
    assert head.header("Content-Type") == get.header("Content-Type")


def test_index_html_for_folders_and_redirect_without_slash(tmp_path) -> None:
    s = make_site(tmp_path / "s")
    s.publisher.publish(s.write_package("p.zip", minimal_site(extra={
        "municipio/index.html": b"<p>municipio</p>", "img/a.svg": b"<svg/>"})))
    app = build_app(s.cfg)
    assert request(app, "/").body == b"<!doctype html><title>PREP</title>"
    assert request(app, "/municipio/").body == b"<p>municipio</p>"
    r = request(app, "/municipio")
    assert r.status == 301 and r.header("Location") == "/municipio/"
    # No directory listing for a folder without index.html.
    assert request(app, "/img/").status == 404
    assert request(app, "/img").status == 404


@pytest.mark.parametrize("path", [
    "/../../etc/passwd", "/json/../../../etc/passwd", "/%2e%2e/etc/passwd", "/..%2f..%2fetc/passwd",
    "/json/main.json/..", "/etc/passwd", "/json/", "/json", "/.git/config", "//etc/passwd",
    "/_difusor/../json/main.json", "/json/main.json\x00.html",
])
def test_no_path_escapes_anything(live, path: str) -> None:
    _, app, _ = live
    r = request(app, path)
    assert r.status == 404, (path, r.status)
    assert b"root:" not in r.body


def test_query_strings_do_not_change_the_lookup(live) -> None:
    _, app, files = live
    r = request(app, "/json/main.json", query="v=123&cache=bust")
    assert r.status == 200 and r.body == files["json/main.json"]


def test_double_slashes_redirect_to_the_one_canonical_path(live) -> None:
    """``//json///main.json`` would be another CDN cache key for the same bytes (one a flood
    could keep cold): it is sent, once, to the canonical path; that path is untouched."""
    _, app, files = live
    for method in ("GET", "HEAD"):
        r = request(app, "//json///main.json", method=method)
        assert (r.status, r.header("Location"), r.body) == (301, "/json/main.json", b"")
    r = request(app, "//json//main.json", query="v=1")
    assert (r.status, r.header("Location")) == (301, "/json/main.json?v=1")
    r = request(app, "/json/main.json")
    assert (r.status, r.body) == (200, files["json/main.json"])
    assert r.header("Cache-Control") == MAIN_CC
    assert request(app, "//index.html").header("Location") == "/index.html"
    assert request(app, "//nada//aqui.json").status == 404


def test_dotfiles_are_kept_but_not_served(tmp_path) -> None:
    s = make_site(tmp_path / "d")
    s.publisher.publish(s.write_package("p.zip", minimal_site(extra={
        ".htaccess": b"deny", "css/.DS_Store": b"x", ".well-known/security.txt": b"Contact: x"})))
    app = build_app(s.cfg)
    assert request(app, "/.htaccess").status == 404
    assert request(app, "/css/.DS_Store").status == 404
    assert request(app, "/.well-known/security.txt").status == 200
    assert (s.store.site / ".htaccess").read_bytes() == b"deny"  # published unmodified


def test_other_methods_are_refused(live) -> None:
    _, app, _ = live
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        r = request(app, "/json/main.json", method=method)
        assert r.status == 405 and "GET" in (r.header("Allow") or "")


def test_status_and_health(site: Site) -> None:
    app = build_app(site.cfg)
    health = request(app, "/_difusor/health")
    assert health.status == 503
    assert json.loads(request(app, "/_difusor/status.json").body) == {
        "corte": None, "zona": "America/Mexico_City"}
    site.publisher.publish(site.write_package("p.zip", minimal_site()))
    health = request(app, "/_difusor/health")
    assert health.status == 200 and health.body.startswith(b"ok 20241208_2030")
    status = request(app, "/_difusor/status.json")
    assert status.header("Cache-Control") == MAIN_CC
    doc = json.loads(status.body)
    row = site.ledger.release("20241208_2030")
    published = datetime.fromisoformat(row.created_at).astimezone(ZoneInfo("America/Mexico_City"))
    assert doc == {"corte": {"id": "20241208_2030", "fecha_hora": "2024-12-08T20:30:00-06:00",
                             "publicado": published.isoformat(),
                             "paquete_sha256": row.package_sha256},
                   "zona": "America/Mexico_City"}
    assert request(app, "/_difusor/otra").status == 404


def test_status_json_is_what_status_command_prints(site: Site) -> None:
    """Documented as the same shape as ``difusor status --json``: same corte, same zone."""
    import subprocess
    import sys

    site.publisher.publish(site.write_package("p.zip", minimal_site()))
    served = json.loads(request(build_app(site.cfg), "/_difusor/status.json").body)
    done = subprocess.run([sys.executable, "-m", "difusor", "status", "--json", "--config",
                           str(site.config_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert served == {"corte": printed["corte"], "zona": printed["zona"]}


def test_a_new_activation_is_served_by_the_next_request(site: Site) -> None:
    app = build_app(site.cfg)
    site.publisher.publish(site.write_package("a.zip", minimal_site(hora="20:30")))
    first = request(app, "/json/main.json").body
    site.publisher.publish(site.write_package("b.zip", minimal_site(hora="20:40")), finish=False)
    second = request(app, "/json/main.json")
    assert second.body != first and b"20:40" in second.body
    assert second.header("X-Difusor-Corte") == "20241208_2040"


def test_access_log_records_each_request_as_json(live) -> None:
    site, app, _ = live
    request(app, "/json/main.json", query="x=1", headers={
        "User-Agent": 'Mozilla/5.0 "quoted"', "Referer": "https://medio.example/prep"})
    request(app, "/no-existe")
    app.log.flush()
    lines = [json.loads(x) for x in site.state.access_log.read_text().splitlines()]
    first, second = lines[-2:]
    assert first["path"] == "/json/main.json" and first["query"] == "x=1"
    assert first["status"] == 200 and first["bytes"] > 0
    assert first["user_agent"] == 'Mozilla/5.0 "quoted"'
    assert first["referer"] == "https://medio.example/prep"
    assert first["ip"] == "127.0.0.1" and first["method"] == "GET"
    assert first["corte"] == "20241208_2020" and first["duration_ms"] >= 0
    assert first["time"].endswith("Z")
    assert second["status"] == 404 and second["referer"] is None


def test_switching_by_delta_gives_the_same_answers_as_a_full_build(site: Site, cortes: list) -> None:
    from difusor.demo.packages import write_package
    from difusor.headers import HeaderPolicy
    from difusor.serve.table import TableBuilder
    from difusor.store.manifest import ManifestStore
    from difusor.store.objects import ObjectStore

    def shape(table) -> dict:
        return {url: (r.sha256, r.identity.etag, sorted(r.encoded)) for url, r in table.resources.items()}

    builder = TableBuilder(ObjectStore(site.store.objects, packs=site.store.packs),
                           HeaderPolicy.from_config(site.cfg), site.cfg.web.memory_max_file,
                           site.cfg.store.compress_min_bytes)
    manifests = ManifestStore(site.store.manifests)
    site.publisher.publish(write_package(cortes[0], site.root / "pk"))
    table = builder.build(manifests.load(cortes[0].stamp), None)
    for corte in cortes[1:4]:
        site.publisher.publish(write_package(corte, site.root / "pk", kind="incremental"),
                               finish=False)
        changed, removed, base = manifests.load_delta(corte.stamp)
        assert base == table.release_id and len(changed.files) < len(corte.files)
        table = builder.apply(changed, removed, table)  # from the pack, before finishing
        assert shape(table) == shape(builder.build(manifests.load(corte.stamp), None))
        assert table.release_id == corte.stamp
        site.publisher.finish(corte.stamp)
        table = builder.settle(table, list(table.by_path))
        fresh = builder.build(manifests.load(corte.stamp), None)
        assert shape(table) == shape(fresh)
        assert all(r.settled for r in table.by_path.values())
        assert {url: r.identity.body for url, r in table.resources.items()} == {
            url: r.identity.body for url, r in fresh.resources.items()}


def beacon(app, query: str, client: str = "198.51.100.7:40000", agent: str = "Mozilla/5.0 (X)"):
    import asyncio

    from rsgi_client import Headers, Proto, Scope

    proto = Proto()
    scope = Scope("/_difusor/b", "POST", query, client=client,
                  headers=Headers({"user-agent": agent}))
    asyncio.run(app.__rsgi__(scope, proto))
    return proto.response


def test_the_beacon_refuses_implausible_times(live) -> None:
    from difusor.serve.app import BEACON_MAX_MS

    _, app, _ = live
    assert beacon(app, "p=/portal&v=45000").status == 204
    assert beacon(app, f"p=/portal&v={BEACON_MAX_MS}").status == 204
    for query in (f"p=/portal&v={BEACON_MAX_MS + 1}", "p=/portal&v=4294967295", "p=/portal&v=0",
                  "p=/portal&v=-5", "p=/portal&v=1e9", "p=/portal", "v=1000", "p=/x&v=१२"):
        r = beacon(app, query, client="198.51.100.8:40000")
        assert r.status == 400, query


def test_beacons_are_rate_limited_per_address(live) -> None:
    """1,000 reports from one address, each with another user agent: the first few pass, the
    rest get 429 (analytics counts only answers < 400); another address is not affected."""
    import time

    from difusor.serve.app import BEACON_BURST, BEACON_RATE

    _, app, _ = live
    started = time.monotonic()
    answers = Counter(beacon(app, "p=/portal&v=30000", agent=f"Mozilla/5.0 (X{i})").status
                      for i in range(1000))
    elapsed = time.monotonic() - started
    assert set(answers) == {204, 429}
    assert answers[204] <= BEACON_BURST + BEACON_RATE * elapsed + 1
    assert beacon(app, "p=/portal&v=30000", client="198.51.100.9:40000").status == 204
