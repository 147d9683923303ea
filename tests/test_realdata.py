"""Real PREP files (INE 2018, Puebla 2019) published and served byte-identical, file by file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess, Site, realdata

from difusor import config as config_mod
from difusor.demo.packages import archive_bytes

PAGE = b"<!doctype html><meta charset=utf-8><title>PREP 2018</title><script src=app.js></script>"


@pytest.mark.slow
def test_ine_2018_series_full_then_incremental_served_byte_identical(site: Site) -> None:
    files = sorted(realdata("ine2018-presidente").glob("*_PREP.json"))
    assert len(files) >= 90
    _, port = config_mod.parse_address(site.cfg.web.listen)
    server = ServerProcess(site.config_path, port).start()
    try:
        with httpx.Client(base_url=server.url) as http:
            for n, real in enumerate(files):
                stamp = real.name[: len("YYYYMMDD_HHMM")]
                data = real.read_bytes()
                content = {"json/main.json": data}
                if n == 0:
                    content |= {"index.html": PAGE, "app.js": b"// visor\n"}
                wrapped = {f"{stamp}_PREP/{p}": b for p, b in content.items()}
                pkg = site.root / "pk" / f"{stamp}_PREP.zip"
                pkg.parent.mkdir(exist_ok=True)
                pkg.write_bytes(archive_bytes(wrapped, "zip"))
                out = site.publisher.publish(pkg, finish=n % 10 == 0)
                assert out.release_id == stamp, real.name
                assert out.kind == ("full" if n == 0 else "incremental")
                r = http.get("/json/main.json")
                assert r.status_code == 200
                assert r.content == data, real.name
                assert r.headers["cache-control"] == "no-cache, no-store, must-revalidate"
                assert r.headers["x-difusor-corte"] == stamp
                assert http.get("/index.html").content == PAGE
                assert http.get("/app.js").content == b"// visor\n"
    finally:
        server.stop()
    assert len(site.ledger.activations(limit=500)) == len(files)


def test_puebla_2019_database_packages_served_byte_identical(tmp_path: Path) -> None:
    from conftest import make_site, minimal_site

    # Each zip is one election's database for the same corte: one difusor site each.
    for pkg in sorted(realdata("puebla2019-extraordinaria").glob("*.zip")):
        site = make_site(tmp_path / pkg.stem)
        site.publisher.publish(site.write_package("base.zip", minimal_site("03/06/2019", "08:00")))
        out = site.publisher.publish(pkg)
        assert out.kind == "incremental"
        assert out.corte_time == "2019-06-03T09:15:00-05:00"
        with zipfile.ZipFile(pkg) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                inner = info.filename.split("/", 1)[1]  # the wrapper folder is the archive's own
                assert (site.store.site / inner).read_bytes() == zf.read(info), inner
