"""The package reader: which paths a package yields, full or incremental, and its checksums.

What the operator sees: the site paths that go live must be the authority's paths (a package's
own wrapper folder removed, never a site folder), and the same site must give the same files
whatever archive format it came in.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import hashlib
import io
import json
import lzma
import random
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import Site, minimal_site

from difusor.config import CorteSettings, PackageSettings
from difusor.demo.packages import archive_bytes
from difusor.errors import PackageRefused
from difusor.package import reader
from difusor.package.reader import VerifiedPackage, read_package
from difusor.store.objects import ObjectStore, Staging

ZONE = ZoneInfo("America/Mexico_City")
SITE = minimal_site("08/12/2024", "20:30", {"json/detalle.json": b'{"casillas": 3}',
                                            "css/estilo.css": b"body{margin:0}"})


class SpySink:
    """A staging area that remembers how it was fed."""

    def __init__(self, staging: Staging) -> None:
        self.staging = staging
        self.whole: list[int] = []
        self.chunked: list[list[int]] = []

    def add(self, data: bytes) -> str:
        self.whole.append(len(data))
        return self.staging.add(data)

    def add_chunks(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        sizes: list[int] = []
        self.chunked.append(sizes)

        def counted() -> Iterable[bytes]:
            for chunk in chunks:
                sizes.append(len(chunk))
                yield chunk

        return self.staging.add_chunks(counted())

    def read(self, sha256: str) -> bytes:
        return self.staging.read(sha256)


Read = Callable[..., VerifiedPackage]


@pytest.fixture
def sink(tmp_path: Path) -> SpySink:
    store = ObjectStore(tmp_path / "objects", fsync=False)
    return SpySink(store.staging(tmp_path / "tmp"))


@pytest.fixture
def read(tmp_path: Path, sink: SpySink) -> Read:
    def run(data: bytes, name: str, *, sidecar: str | None = None, pointers: tuple[str, ...] = (),
            **settings: object) -> VerifiedPackage:
        path = tmp_path / "in" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return read_package(
            path, name=name, package_sha256=hashlib.sha256(data).hexdigest(), sidecar_text=sidecar,
            settings=PackageSettings(**settings), corte_settings=CorteSettings(json_pointers=list(pointers)),
            zone=ZONE, sink=sink,
        )
    return run


def pack(files: dict[str, bytes], fmt: str = "zip", prefix: str = "") -> bytes:
    return archive_bytes({prefix + p: d for p, d in files.items()}, fmt)


def digests(files: dict[str, bytes]) -> dict[str, str]:
    return {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}


def got(v: VerifiedPackage) -> dict[str, str]:
    return {p: f.sha256 for p, f in v.files.items()}


def sums(files: dict[str, bytes], prefix: str = "") -> bytes:
    return "".join(f"{h}  {prefix}{p}\n" for p, h in sorted(digests(files).items())).encode()


# -- wrapper folders --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "tgz", "tar"])
def test_wrapper_named_like_the_archive_is_stripped(read: Read, fmt: str) -> None:
    v = read(pack(SITE, fmt, "paquete-prep/"), f"paquete-prep.{fmt}")
    assert got(v) == digests(SITE)
    assert v.wrapper == "paquete-prep"
    assert v.kind == "full"


def test_stamped_wrapper_is_stripped_whatever_the_archive_is_called(read: Read) -> None:
    v = read(pack(SITE, prefix="20241208_2030_PREP_IRIMBO/"), "envio.zip")
    assert got(v) == digests(SITE)
    assert v.wrapper == "20241208_2030_PREP_IRIMBO"


def test_configured_wrapper_glob_is_stripped(read: Read) -> None:
    data = pack(SITE, prefix="sitio-irimbo/")
    v = read(data, "envio.zip", wrapper_names=["sitio-*"])
    assert got(v) == digests(SITE)
    assert v.wrapper == "sitio-irimbo"
    assert v.kind == "full"


def test_a_single_folder_that_is_not_a_wrapper_stays(read: Read) -> None:
    data = pack(SITE, prefix="sitio-irimbo/")
    v = read(data, "envio.zip")  # no glob configured: it may be a folder of the site
    assert got(v) == {f"sitio-irimbo/{p}": h for p, h in digests(SITE).items()}
    assert v.wrapper is None
    assert v.kind == "incremental"  # there is no index.html at the root


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
@pytest.mark.parametrize("stem", ["20241208_2040_PREP", "json", "envio"])
def test_incremental_with_only_json_keeps_its_json_folder(read: Read, fmt: str, stem: str) -> None:
    """``tar czf json.tar.gz json/`` is an incremental package, not a wrapper called json/."""
    files = {"json/main.json": minimal_site("08/12/2024", "20:40")["json/main.json"],
             "json/detalle.json": b'{"casillas": 4}'}
    v = read(pack(files, fmt), f"{stem}.{fmt}")
    assert got(v) == digests(files)
    assert v.wrapper is None
    assert v.kind == "incremental"


def test_incremental_with_only_main_json_keeps_its_path(read: Read) -> None:
    files = {"json/main.json": minimal_site("08/12/2024", "20:40")["json/main.json"]}
    v = read(pack(files), "20241208_2040_PREP.zip")
    assert set(v.files) == {"json/main.json"}
    assert v.wrapper is None


def test_sha256sums_beside_the_wrapper_still_strips(read: Read) -> None:
    files = {**{f"W/{p}": d for p, d in SITE.items()}, "SHA256SUMS": sums(SITE, "W/")}
    v = read(pack(files), "W.zip")
    assert v.wrapper == "W"
    assert set(v.files) == {*SITE, "SHA256SUMS"}
    assert got(v)["json/main.json"] == digests(SITE)["json/main.json"]
    assert "sha256sums" in v.checksums


def test_stray_file_beside_a_folder_prevents_stripping(read: Read) -> None:
    files = {**{f"W/{p}": d for p, d in SITE.items()}, "LEEME.txt": b"hola"}
    v = read(pack(files), "W.zip")
    assert v.wrapper is None
    assert "W/index.html" in v.files and "LEEME.txt" in v.files


# -- full or incremental ----------------------------------------------------------------------


def test_index_html_marks_a_full_package(read: Read) -> None:
    assert read(pack(SITE), "20241208_2030_PREP.zip").kind == "full"
    partial = {p: d for p, d in SITE.items() if p != "index.html"}
    assert read(pack(partial), "20241208_2030_PREP.zip").kind == "incremental"


def test_kind_setting_overrides_the_marker(read: Read) -> None:
    partial = {p: d for p, d in SITE.items() if p != "index.html"}
    assert read(pack(partial), "p.zip", kind="full").kind == "full"
    assert read(pack(SITE), "p.zip", kind="incremental").kind == "incremental"
    with pytest.raises(PackageRefused) as caught:
        read(pack({"css/estilo.css": b"x"}), "20241208_2030_PREP.zip", kind="full")
    assert caught.value.code == "main_missing"


def test_full_marker_setting(read: Read) -> None:
    files = {**{p: d for p, d in SITE.items() if p != "index.html"}, "portada.html": b"<p>PREP</p>"}
    assert read(pack(files), "p.zip").kind == "incremental"
    assert read(pack(files), "p.zip", full_marker="portada.html").kind == "full"


# -- names as tar and zip tools write them ----------------------------------------------------


def _dot_tar(gz: bool) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for d in ("./", "./json/", "./css/"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tf.addfile(info)
        for p, data in SITE.items():
            info = tarfile.TarInfo("./" + p)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue()) if gz else buf.getvalue()


@pytest.mark.parametrize("gz", [True, False])
def test_dot_slash_prefixes_are_dropped(read: Read, gz: bool) -> None:
    v = read(_dot_tar(gz), "20241208_2030_PREP.tar.gz" if gz else "20241208_2030_PREP.tar")
    assert got(v) == digests(SITE)
    assert v.kind == "full"


@pytest.mark.skipif(shutil.which("tar") is None, reason="sin el programa tar")
def test_tar_minus_c_dir_dot(read: Read, tmp_path: Path) -> None:
    src = tmp_path / "sitio"
    for p, data in SITE.items():
        (src / p).parent.mkdir(parents=True, exist_ok=True)
        (src / p).write_bytes(data)
    out = tmp_path / "20241208_2030_PREP.tar.gz"
    subprocess.run(["tar", "-C", str(src), "-czf", str(out), "."], check=True)
    v = read(out.read_bytes(), out.name)
    assert got(v) == digests(SITE)


def test_directory_entries_do_not_become_files(read: Read) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("json/", b"")
        zf.writestr("css/", b"")
        for p, d in SITE.items():
            zf.writestr(p, d)
    assert got(read(buf.getvalue(), "20241208_2030_PREP.zip")) == digests(SITE)


# -- checksums --------------------------------------------------------------------------------


@pytest.mark.parametrize("form", [
    "{h}  {n}\n", "{H}  {n}\n", "{h} *{n}\n", "# sha256sum\n{h}  {n}\n", "{h}\n",
])
def test_sidecar_is_verified(read: Read, form: str) -> None:
    data = pack(SITE)
    h = hashlib.sha256(data).hexdigest()
    v = read(data, "20241208_2030_PREP.zip", sidecar=form.format(h=h, H=h.upper(), n="x.zip"))
    assert v.checksums == ["sidecar"]
    with pytest.raises(PackageRefused) as caught:
        read(data + b"\0", "20241208_2030_PREP.zip", sidecar=form.format(h=h, H=h.upper(), n="x"))
    assert caught.value.code == "checksum_sidecar"


def test_sidecar_required_and_present(read: Read) -> None:
    data = pack(SITE)
    v = read(data, "p.zip", sidecar=f"{hashlib.sha256(data).hexdigest()}  p.zip\n",
             require_checksum="any")
    assert v.checksums == ["sidecar"]


@pytest.mark.parametrize("listed", ["", "W/", "./", "./W/"])
def test_inner_sha256sums_with_and_without_wrapper_prefix(read: Read, listed: str) -> None:
    files = {**SITE, "SHA256SUMS": sums(SITE, listed)}
    v = read(pack(files, "tar.gz", "W/"), "W.tar.gz", require_checksum="sha256sums")
    assert v.wrapper == "W"
    assert "sha256sums" in v.checksums
    assert set(v.files) == {*SITE, "SHA256SUMS"}


def test_inner_sha256sums_catches_one_changed_file(read: Read) -> None:
    files = {**SITE, "SHA256SUMS": sums(SITE, "W/")}
    files["json/detalle.json"] = b'{"casillas": 999}'
    with pytest.raises(PackageRefused) as caught:
        read(pack(files, "zip", "W/"), "W.zip")
    assert caught.value.code == "checksum_inner"
    assert "json/detalle.json" in caught.value.message


def test_other_json_is_only_validated_when_configured(read: Read) -> None:
    files = {**SITE, "json/distrito.json": b"{roto"}
    assert "json/distrito.json" in read(pack(files), "20241208_2030_PREP.zip").files
    with pytest.raises(PackageRefused) as caught:
        read(pack(files), "20241208_2030_PREP.zip", validate_json="all")
    assert caught.value.code == "json_invalid"
    assert "json/distrito.json" in caught.value.message


# -- formats ----------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "20241208_2030_PREP/"])
def test_zip_tar_gz_and_tar_give_identical_file_maps(read: Read, prefix: str) -> None:
    results = {fmt: read(pack(SITE, fmt, prefix), f"20241208_2030_PREP.{fmt}")
               for fmt in ("zip", "tar.gz", "tar")}
    assert {fmt: v.format for fmt, v in results.items()} == {"zip": "zip", "tar.gz": "tar.gz", "tar": "tar"}
    zip_v = results["zip"]
    assert got(zip_v) == digests(SITE)
    for v in results.values():
        assert v.files == zip_v.files
        assert v.kind == zip_v.kind == "full"
        assert v.corte.when == zip_v.corte.when


def test_format_is_read_from_the_bytes_not_the_name(read: Read) -> None:
    v = read(pack(SITE, "tar.gz"), "20241208_2030_PREP.zip")
    assert v.format == "tar.gz"
    assert got(v) == digests(SITE)


BIG = 9 * 1024 * 1024 + 12345  # past reader.SMALL_FILE: streamed in chunks


def _big() -> bytes:
    return random.Random(3).randbytes(BIG)


def _stored(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for p, d in files.items():
            zf.writestr(p, d)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "tar"])
def test_large_member_is_streamed_and_stored_intact(read: Read, sink: SpySink, fmt: str) -> None:
    assert BIG > reader.SMALL_FILE
    big = _big()
    files = {**SITE, "datos/base.csv": big}
    if fmt == "zip":
        data = _stored(files)
    elif fmt == "tar.gz":
        raw = pack(files, "tar")
        data = gzip.compress(raw, compresslevel=1)
    else:
        data = pack(files, "tar")
    v = read(data, f"20241208_2030_PREP.{fmt}")
    entry = v.files["datos/base.csv"]
    assert entry.sha256 == hashlib.sha256(big).hexdigest()
    assert entry.size == len(big)
    assert sink.read(entry.sha256) == big
    # it went through the chunked path, in bounded pieces, never whole
    assert len(sink.chunked) == 1
    assert sum(sink.chunked[0]) == len(big)
    assert max(sink.chunked[0]) <= reader.CHUNK
    assert len(sink.chunked[0]) > 1
    assert max(sink.whole) < reader.SMALL_FILE


@pytest.mark.slow
def test_large_member_published_byte_identical(site: Site) -> None:
    big = _big()
    path = site.root / "20241208_2030_PREP.tar.gz"
    path.write_bytes(gzip.compress(pack({**SITE, "datos/base.csv": big}, "tar"), compresslevel=1))
    outcome = site.publisher.publish(path)
    assert outcome.status == "published"
    sha = hashlib.sha256(big).hexdigest()
    obj = site.store.objects / sha[:2] / sha[2:]
    assert hashlib.sha256(obj.read_bytes()).hexdigest() == sha
    live = site.store.site / "datos/base.csv"
    assert live.stat().st_size == len(big)
    assert hashlib.sha256(live.read_bytes()).hexdigest() == sha


def test_zip_whose_local_name_differs_from_its_directory_is_refused(read: Read) -> None:
    """Content is read from the local entry, names from the central directory: if they
    disagree, one of them lies, and nothing of the package is trusted."""
    files = {"index.html": b"<p>x</p>", "json/main.json": minimal_site()["json/main.json"],
             "json/aaaa.json": b'{"a": 1}'}
    data = bytearray(pack(files))
    at = data.find(b"json/aaaa.json")  # the first occurrence is the local header's
    data[at:at + len(b"json/aaaa.json")] = b"json/bbbb.json"
    with pytest.raises(PackageRefused) as refused:
        read(bytes(data), "p.zip")
    assert refused.value.code == "corrupt" and "no coinciden" in refused.value.message


def test_stored_and_deflated_members_read_alike(read: Read) -> None:
    files = {"index.html": b"<p>x</p>" * 50, "json/main.json": minimal_site()["json/main.json"]}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("index.html"), files["index.html"])  # stored
        zf.writestr("json/main.json", files["json/main.json"], compress_type=zipfile.ZIP_DEFLATED)
    assert got(read(buf.getvalue(), "p.zip")) == digests(files)


# -- large files the reader must look inside -------------------------------------------------


def _big_main(hora: str = "20:30") -> bytes:
    """A valid main.json past reader.SMALL_FILE, its corte inside (base64 noise: no bomb)."""
    filler = base64.b64encode(random.Random(5).randbytes(7 * 1024 * 1024)).decode()
    doc = {"ultimoCorte": {"fecha": "08/12/2024", "hora": hora}, "relleno": filler}
    data = json.dumps(doc).encode()
    assert len(data) > reader.SMALL_FILE
    return data


@pytest.mark.parametrize("fmt", ["zip", "tar"])
@pytest.mark.slow
def test_large_main_json_is_validated_and_gives_the_corte(read: Read, fmt: str) -> None:
    big = _big_main("20:50")
    v = read(pack({**SITE, "json/main.json": big}, fmt), f"envio.{fmt}")
    assert v.files["json/main.json"].sha256 == hashlib.sha256(big).hexdigest()
    assert v.corte.when.hour == 20 and v.corte.when.minute == 50  # read from the large file
    broken = big[:-1]
    with pytest.raises(PackageRefused) as refused:
        read(pack({**SITE, "json/main.json": broken}, fmt), f"envio.{fmt}")
    assert refused.value.code == "json_invalid"


@pytest.mark.slow
def test_large_main_json_published_byte_identical(site: Site) -> None:
    big = _big_main()
    path = site.write_package("envio.zip", {**SITE, "json/main.json": big})
    outcome = site.publisher.publish(path)
    assert outcome.status == "published" and outcome.release_id == "20241208_2030"
    assert (site.store.site / "json/main.json").read_bytes() == big


def test_large_sha256sums_is_checked(read: Read) -> None:
    # a long list (comments stand in for the lines of a national site's thousands of files)
    comments = "".join(f"# {i:08d} {'x' * 60}\n" for i in range(140_000)).encode()
    listing = comments + sums(SITE)
    assert len(listing) > reader.SMALL_FILE
    v = read(pack({**SITE, "SHA256SUMS": listing}), "p.zip")
    assert "sha256sums" in v.checksums
    wrong = comments + sums({**SITE, "index.html": b"otra"})
    with pytest.raises(PackageRefused) as refused:
        read(pack({**SITE, "SHA256SUMS": wrong}), "p.zip")
    assert refused.value.code == "checksum_inner"


# -- other compressions (documented in docs/paquetes.md) ---------------------------------------


@pytest.mark.parametrize("fmt", ["tar.bz2", "tar.xz"])
def test_bzip2_and_xz_tars_are_read_like_the_others(read: Read, fmt: str) -> None:
    raw = pack(SITE, "tar")
    data = bz2.compress(raw) if fmt == "tar.bz2" else lzma.compress(raw)
    v = read(data, f"20241208_2030_PREP.{fmt}")
    assert v.format == fmt and got(v) == digests(SITE)


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_bzip2_and_lzma_zip_members_are_read(read: Read, method: int) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for p, d in SITE.items():
            zf.writestr(p, d)
    assert got(read(buf.getvalue(), "p.zip")) == digests(SITE)


def test_concatenated_tar_is_refused(read: Read) -> None:
    data = pack(SITE, "tar") + pack({"extra.html": b"<p>segunda mitad</p>"}, "tar")
    with pytest.raises(PackageRefused) as refused:
        read(data, "20241208_2030_PREP.tar")
    assert refused.value.code == "trailing_data"
    # the second archive glued right after the end marker, inside the first one's last record
    first = pack(SITE, "tar")
    with tarfile.open(fileobj=io.BytesIO(first)) as tf:
        last = tf.getmembers()[-1]
    marker_end = last.offset_data + -(-last.size // 512) * 512 + 1024
    with pytest.raises(PackageRefused) as refused:
        read(first[:marker_end] + pack({"extra.html": b"x"}, "tar"), "20241208_2030_PREP.tar")
    assert refused.value.code == "trailing_data"
    padded = first + bytes(20 * 512)  # zero padding after the end marker is normal
    assert got(read(padded, "20241208_2030_PREP.tar")) == digests(SITE)


def test_formats_refusal_names_every_accepted_format(read: Read) -> None:
    with pytest.raises(PackageRefused) as refused:
        read(b"Rar!\x1a\x07\x01\x00" + bytes(600), "p.rar")
    for suffix in (".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"):
        assert suffix in refused.value.message
