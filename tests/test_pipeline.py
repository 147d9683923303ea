"""Publishing as an operator sees it: what goes live, what the ledger says, what is kept."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import pytest
from conftest import Site, minimal_site, realdata

from difusor.demo.packages import archive_bytes, write_package
from difusor.errors import NotFound, PackageRefused
from difusor.publish.activate import live_release, read_generation
from difusor.publish.collect import collect_cortes
from difusor.publish.rollback import rollback
from difusor.store.manifest import ManifestStore


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def served_files(site: Site) -> dict[str, bytes]:
    """The live release's files, without the compressed variants linked beside them."""
    manifest = ManifestStore(site.store.manifests).load(live_release(site.store))
    return {p: (site.store.site / p).read_bytes() for p in manifest.files}


def test_full_then_incremental_cortes_go_live_byte_identical(site: Site, cortes: list) -> None:
    expected: dict[str, bytes] = {}
    for n, corte in enumerate(cortes):
        kind = "full" if n == 0 else "incremental"
        out = site.publisher.publish(write_package(corte, site.root / "pk", kind=kind))
        assert out.status == "published" and out.release_id == corte.stamp
        expected = corte.files  # an incremental package lands on top of the previous corte
        assert served_files(site) == expected
        assert live_release(site.store) == corte.stamp
    assert out.kind == "incremental"


def test_release_folder_is_hard_links_to_read_only_objects(site: Site, cortes: list) -> None:
    site.publisher.publish(write_package(cortes[0], site.root / "pk"))
    main = site.store.site / "json/main.json"
    digest = hashlib.sha256(main.read_bytes()).hexdigest()
    obj = site.store.objects / digest[:2] / digest[2:]
    assert os.stat(main).st_ino == os.stat(obj).st_ino
    assert oct(obj.stat().st_mode & 0o777) == oct(0o444)
    assert (site.store.site / "json/main.json.gz").exists()  # for nginx gzip_static
    assert (site.store.site / "json/main.json.br").exists()


def test_same_package_again_is_a_no_op(site: Site) -> None:
    pkg = site.write_package("a.zip", minimal_site())
    first = site.publisher.publish(pkg)
    gen = read_generation(site.store)
    again = site.publisher.publish(pkg)
    assert again.status == "unchanged" and again.release_id == first.release_id
    assert read_generation(site.store) == gen  # nothing re-activated
    assert site.ledger.events("duplicate")


def test_same_corte_repackaged_with_same_files_is_a_no_op(site: Site) -> None:
    site.publisher.publish(site.write_package("a.zip", minimal_site()))
    again = site.publisher.publish(site.write_package("a.tar.gz", minimal_site(), fmt="tar.gz"))
    assert again.status == "unchanged"


def test_force_publishes_a_corrected_corte_under_a_new_release(site: Site) -> None:
    site.publisher.publish(site.write_package("a.zip", minimal_site()))
    corrected = minimal_site(extra={"nota.txt": b"fe de erratas"})
    with pytest.raises(PackageRefused) as refused:
        site.publisher.publish(site.write_package("b.zip", corrected))
    assert refused.value.code == "same_corte_different"
    out = site.publisher.publish(site.write_package("b.zip", corrected), force=True)
    assert out.release_id == "20241208_2030-2"
    assert (site.store.site / "nota.txt").read_bytes() == b"fe de erratas"


def test_ledger_records_every_step_with_its_time(site: Site) -> None:
    out = site.publisher.publish(site.write_package("a.zip", minimal_site()))
    kinds = [e["kind"] for e in reversed(site.ledger.events(limit=50))]
    for step in ("received", "verified", "stored", "activated"):
        assert step in kinds
    order = [kinds.index(k) for k in ("received", "verified", "stored", "activated")]
    assert order == sorted(order)
    pkg = site.ledger.package(out.package_id)
    assert pkg["state"] == "activated" and pkg["corte_time"] == "2024-12-08T20:30:00-06:00"
    assert Path(pkg["kept_at"]).read_bytes() == (site.root / "incoming-packages/a.zip").read_bytes()
    with pytest.raises(PackageRefused):
        site.publisher.publish(site.write_package("bad.zip", {"json/main.json": b"{"}))
    refused = site.ledger.events("refused")[0]
    assert refused["detail"]["code"] == "json_invalid" and refused["at"]


def test_ledger_is_in_wal_mode(site: Site) -> None:
    mode = site.ledger._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_sidecar_is_verified_and_kept(site: Site, cortes: list) -> None:
    pkg = write_package(cortes[0], site.root / "pk", sidecar=True)
    out = site.publisher.publish(pkg)
    event = next(e for e in site.ledger.events("verified") if e["package_id"] == out.package_id)
    assert event["detail"]["checksums"] == ["sidecar"]
    kept = Path(site.ledger.package(out.package_id)["kept_at"])
    assert Path(str(kept) + ".sha256").read_text() == Path(str(pkg) + ".sha256").read_text()


def test_rollback_returns_to_the_previous_corte_and_back(site: Site, cortes: list) -> None:
    for n, corte in enumerate(cortes[:3]):
        site.publisher.publish(write_package(corte, site.root / "pk",
                                             kind="full" if n == 0 else "incremental"))
    assert rollback(site.publisher) == cortes[1].stamp
    assert served_files(site) == cortes[1].files
    assert site.ledger.last_activation().cause == "rollback"
    # An incremental package now lands on top of the corte that is live again.
    assert rollback(site.publisher, cortes[2].stamp) == cortes[2].stamp
    with pytest.raises(NotFound):
        rollback(site.publisher, "20991231_2359")


def test_gc_keeps_the_newest_and_the_live_corte(site: Site, cortes: list) -> None:
    for n, corte in enumerate(cortes):
        site.publisher.publish(write_package(corte, site.root / "pk",
                                             kind="full" if n == 0 else "incremental"))
    rollback(site.publisher, cortes[0].stamp)
    result = collect_cortes(site.publisher, keep=2)
    kept = {p.name for p in site.store.releases.iterdir()}
    assert kept == {cortes[0].stamp, cortes[-2].stamp, cortes[-1].stamp}
    assert set(result.releases) == {c.stamp for c in cortes[1:-2]}
    assert result.objects > 0 and result.freed > 0
    assert served_files(site) == cortes[0].files  # the live corte is whole
    referenced = set()
    manifests = ManifestStore(site.store.manifests)
    for rid in kept:
        referenced |= {e.sha256 for e in manifests.load(rid).files.values()}
    present = {p.parent.name + p.name for p in site.store.objects.glob("*/*") if "." not in p.name}
    assert present == referenced
    assert site.ledger.release(cortes[1].stamp).collected_at is not None


def test_making_a_publisher_touches_nothing_on_disk(tmp_path: Path) -> None:
    """``difusor gc``/``status`` build one: it must not create a state folder by mistake."""
    from conftest import make_site

    from difusor.publish.publisher import Publisher

    site = make_site(tmp_path / "d")
    moved = site.cfg.model_copy(update={"state": site.cfg.state.model_copy(
        update={"dir": str(tmp_path / "otro-estado")})})
    Publisher(moved, site.ledger)
    assert not (tmp_path / "otro-estado").exists()


def test_gc_does_not_replay_what_an_interrupted_run_left(site: Site,
                                                          cortes: list) -> None:
    """Only a publication or a rollback tidies up after a crash: collecting old cortes never
    re-processes a copy left in incoming/ (the next publication does)."""
    site.publisher.publish(write_package(cortes[0], site.root / "pk", kind="full"))
    leftover = write_package(cortes[1], site.state.incoming, kind="incremental")
    collect_cortes(site.publisher, keep=1)
    assert leftover.exists() and site.ledger.package_by_copy(leftover.name) is None
    site.publisher.publish(write_package(cortes[2], site.root / "pk", kind="incremental"))
    assert not leftover.exists()
    assert site.ledger.package_by_copy(leftover.name)["state"] == "interrupted"


def test_spare_patch_builds_the_same_tree_as_from_scratch(site: Site, cortes: list,
                                                          tmp_path: Path) -> None:
    for n, corte in enumerate(cortes[:4]):
        site.publisher.publish(write_package(corte, site.root / "pk",
                                             kind="full" if n == 0 else "incremental"))
    patched = tree(site.store.site)
    other = __import__("conftest").make_site(tmp_path / "scratch")
    other.publisher.publish(write_package(cortes[3], tmp_path / "pk"))
    assert patched == tree(other.store.site)


def test_publishing_needs_no_original_after_intake(site: Site) -> None:
    pkg = site.write_package("a.zip", minimal_site())
    out = site.publisher.publish(pkg)
    pkg.unlink()
    kept = Path(site.ledger.package(out.package_id)["kept_at"])
    assert kept.exists() and kept.parent == site.state.packages


# -- database packages (CSV + LEEME, no site) ---------------------------------------------------

DATABASE = '[store]\nfsync = false\n[package]\nkind = "database"\n'


def database(tmp_path: Path, extra: str = "") -> Site:
    from conftest import make_site

    return make_site(tmp_path / "bd", extra_toml=DATABASE + extra)


def csv_at(line: str, rows: str = "1|2\n") -> bytes:
    return f"sep=|\nGUBERNATURA\n{line}\nACTAS|CAT\u00c1LOGO\n{rows}".encode("latin-1")


def test_real_database_package_is_a_first_publication(tmp_path: Path) -> None:
    pkg = sorted(realdata("puebla2019-extraordinaria").glob("*GUB*.zip"))[0]
    site = database(tmp_path)
    renamed = site.root / "base-de-datos.zip"  # no date in the name: the CSV line decides
    renamed.write_bytes(pkg.read_bytes())
    out = site.publisher.publish(renamed)
    assert out.status == "published" and out.kind == "database"
    assert out.corte_time == "2019-06-03T09:15:00-05:00"
    with zipfile.ZipFile(pkg) as zf:
        for info in zf.infolist():
            if not info.is_dir():
                inner = info.filename.split("/", 1)[1]
                assert (site.store.site / inner).read_bytes() == zf.read(info), inner
    site.ledger.close()


def test_newer_database_package_replaces_the_previous_one(tmp_path: Path) -> None:
    site = database(tmp_path)
    site.publisher.publish(site.write_package("a.zip", {
        "PUE_GUB_0915.csv": csv_at("3/6/2019 09:15 (UTC-5)"), "LEEME.txt": b"v1"}))
    out = site.publisher.publish(site.write_package("b.zip", {
        "PUE_GUB_0930.csv": csv_at("3/6/2019 09:30 (UTC-5)"), "LEEME.txt": b"v2"}))
    assert out.release_id == "20190603_0930"  # Mexico City kept summer time (UTC-5) in 2019
    served = served_files(site)
    assert set(served) == {"PUE_GUB_0930.csv", "LEEME.txt"}  # the 09:15 file is gone
    assert not (site.store.site / "PUE_GUB_0915.csv").exists()
    site.ledger.close()


def test_database_package_of_zips_takes_the_corte_from_inside(tmp_path: Path) -> None:
    inner = archive_bytes({"GUB/PUE_GUB.csv": csv_at("2019/06/03 05:47 (UTC-5)")}, "zip")
    site = database(tmp_path, 'database_required = ["*.zip"]\n')
    out = site.publisher.publish(site.write_package("envio.zip", {"PUE_GUB.zip": inner,
                                                                  "LEEME.txt": b"leeme"}))
    assert out.corte_time == "2019-06-03T05:47:00-05:00"
    assert (site.store.site / "PUE_GUB.zip").read_bytes() == inner
    site.ledger.close()


def test_database_package_without_what_is_required_is_refused(tmp_path: Path) -> None:
    site = database(tmp_path)
    with pytest.raises(PackageRefused) as caught:
        site.publisher.publish(site.write_package("20190603_0915_PREP.zip", {"LEEME.txt": b"x"}))
    assert caught.value.code == "database_missing"
    assert "*.csv" in caught.value.message and "package.database_required" in caught.value.message
    assert not site.store.current.exists()
    site.ledger.close()


def test_site_packages_still_full_or_incremental_by_default(site: Site) -> None:
    site.publisher.publish(site.write_package("a.zip", minimal_site()))
    out = site.publisher.publish(site.write_package("b.zip", {
        "json/main.json": minimal_site(hora="20:40")["json/main.json"]}))
    assert out.kind == "incremental" and (site.store.site / "index.html").exists()
