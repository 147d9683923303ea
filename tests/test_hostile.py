"""Hostile packages: every one is refused with its own code and leaves the live corte untouched.

Each case publishes a good full package first (so a corte is live), then the hostile one. A
refusal must: raise ``PackageRefused`` with the expected code and one Spanish line; keep
``current`` and the live release's files byte-identical; keep the original, unmodified, in
``state/quarantine/`` with a ``.motivo.txt`` beside it; record the refusal in the ledger; leave
no object of the hostile package in the store and no staging leftovers.

Every archive is built by hand (zipfile, tarfile, raw bytes) and, apart from its one defect,
carries a valid and newer corte: if the defect were not caught, the package would go live.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import re
import stat
import struct
import tarfile
import unicodedata
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Site, make_site, minimal_site

from difusor.errors import PackageRefused

FAST = "[store]\nfsync = false\n"
BASE_NAME = "20241208_2030_PREP.zip"
NAME = "20241208_2040_PREP"  # the hostile package's stem: a newer corte than the live one
EXTRA = {"json/detalle.json": b'{"casillas": 12, "actas": 10}', "css/estilo.css": b"body{margin:0}"}


def site_files(hora: str = "20:40", extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """A complete, valid site at 08/12/2024 ``hora`` (Mexico City)."""
    more = {**EXTRA, "json/detalle.json": b'{"casillas": 12, "hora": "%s"}' % hora.encode()}
    return minimal_site("08/12/2024", hora, {**more, **(extra or {})})


def noise(n: int, seed: int = 7) -> bytes:
    """Incompressible, deterministic bytes."""
    return random.Random(seed).randbytes(n)


def sums(files: dict[str, bytes], prefix: str = "") -> bytes:
    return "".join(
        f"{hashlib.sha256(data).hexdigest()}  {prefix}{path}\n" for path, data in sorted(files.items())
    ).encode()


# -- zip by hand ------------------------------------------------------------------------------


def zip_bytes(entries: list[tuple[str | zipfile.ZipInfo, bytes]], method: int = zipfile.ZIP_DEFLATED
              ) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name" is what some cases are about
        with zipfile.ZipFile(buf, "w", method) as zf:
            for info, data in entries:
                zf.writestr(info, data)
    return buf.getvalue()


def zip_entries(files: dict[str, bytes]) -> list[tuple[str | zipfile.ZipInfo, bytes]]:
    return list(files.items())


_FIELDS = {"flags": (6, 8, "<H"), "method": (8, 10, "<H"), "size": (22, 24, "<I")}


def zip_patch(data: bytes, name: str, field: str, change: Callable[[int], int]) -> bytes:
    """Change one field of member ``name`` in both its local and its central header."""
    local_at, central_at, fmt = _FIELDS[field]
    buf = bytearray(data)
    end = data.rfind(b"PK\x05\x06")
    count, _size, pos = struct.unpack_from("<HII", data, end + 10)
    hits = 0
    for _ in range(count):
        n, m, k = struct.unpack_from("<HHH", buf, pos + 28)
        if bytes(buf[pos + 46:pos + 46 + n]) == name.encode():
            local = struct.unpack_from("<I", buf, pos + 42)[0]
            for at in (pos + central_at, local + local_at):
                struct.pack_into(fmt, buf, at, change(struct.unpack_from(fmt, buf, at)[0]))
            hits += 1
        pos += 46 + n + m + k
    assert hits == 1, name
    return bytes(buf)


def zip_rename_raw(data: bytes, placeholder: bytes, raw: bytes) -> bytes:
    """Put raw bytes where a same-length placeholder name was (local and central header)."""
    assert len(placeholder) == len(raw) and data.count(placeholder) == 2
    return data.replace(placeholder, raw)


def zip_damage(data: bytes, name: str) -> bytes:
    """Flip bytes in the middle of member ``name``'s compressed data."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(name)
    n, m = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + n + m + info.compress_size // 2
    buf = bytearray(data)
    for i in range(start, start + 16):
        buf[i] ^= 0xFF
    return bytes(buf)


# -- tar by hand ------------------------------------------------------------------------------


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""
           ) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o644
    info.mtime = 1733637600
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3
    return info, None


def tar_bytes(entries: list[tuple[tarfile.TarInfo, bytes | None]], gz: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    return gzip.compress(raw, compresslevel=6, mtime=0) if gz else raw


def tar_entries(files: dict[str, bytes]) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    return [member(p, d) for p, d in files.items()]


def tar_boundary(raw: bytes, after: str) -> int:
    """Offset just past member ``after``'s padded data: where the next header starts."""
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        info = tf.getmember(after)
    return info.offset_data + -(-info.size // 512) * 512


def gzip_cut(raw: bytes, at: int) -> bytes:
    """A gzip stream of ``raw[:at]`` flushed to a byte boundary, without the gzip trailer:
    a .tar.gz whose transfer stopped right after one member, before the next header."""
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    return comp.compress(raw[:at]) + comp.flush(zlib.Z_FULL_FLUSH)


# -- the corpus -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    code: str
    name: str
    make: Callable[[], bytes]  # built when the case runs, not when the module is collected
    toml: str = ""
    baseline: bool = True  # publish a good full package first
    sidecar: Callable[[bytes], str] | None = None

    def build(self, folder: Path) -> Path:
        """Write the hostile package (and its sidecar, if any) into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        data = self.make()
        path = folder / self.name
        path.write_bytes(data)
        if self.sidecar:
            (folder / (self.name + ".sha256")).write_text(self.sidecar(data))
        return path


def zipped(*extra: tuple[str | zipfile.ZipInfo, bytes], hora: str = "20:40") -> bytes:
    return zip_bytes([*zip_entries(site_files(hora)), *extra])


def tarred(*extra: tuple[tarfile.TarInfo, bytes | None], gz: bool = True) -> bytes:
    return tar_bytes([*tar_entries(site_files()), *extra], gz=gz)


def zip_link() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("json/enlace.json")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _placeholder_zip(raw: bytes) -> bytes:
    return zip_rename_raw(zipped(("json/" + "X" * len(raw) + ".json", b"{}")), b"X" * len(raw), raw)


def _utf8_flagged_invalid() -> bytes:
    data = zipped(("json/año.json", b"{}"))  # non-ASCII name: zipfile sets the UTF-8 flag
    return zip_rename_raw(data, "año".encode(), b"a\xff\xfeo")


def _encrypted() -> bytes:
    return zip_patch(zipped(("json/secreto.json", b'{"a": 1}')), "json/secreto.json", "flags",
                     lambda v: v | 0x1)


def _unsupported_method() -> bytes:
    return zip_patch(zipped(("json/raro.json", b'{"a": 1}' * 50)), "json/raro.json", "method",
                     lambda v: 99)


def _lying_size() -> bytes:
    data = zipped(("datos/grande.csv", b"1|2|3\n" * 5000))
    return zip_patch(data, "datos/grande.csv", "size", lambda v: 100)


def _corrupt_member() -> bytes:
    text = "".join(f"{i}|casilla {i}|{i * 7 % 13}\n" for i in range(3000)).encode()
    return zip_damage(zipped(("datos/casillas.csv", text)), "datos/casillas.csv")


def _truncated_zip() -> bytes:
    data = zipped(("datos/ruido.bin", noise(64 * 1024)))
    return data[: len(data) * 6 // 10]


def _truncated_targz_mid_member() -> bytes:
    data = tarred(member("datos/ruido.bin", noise(256 * 1024)))
    return data[: len(data) * 7 // 10]


def _truncated_targz_at_header() -> bytes:
    files = site_files()
    raw = tar_bytes(tar_entries(files), gz=False)
    return gzip_cut(raw, tar_boundary(raw, "json/main.json"))


def _truncated_tar_at_header() -> bytes:
    raw = tar_bytes(tar_entries(site_files()), gz=False)
    return raw[: tar_boundary(raw, "json/main.json")]


def _targz_bad_crc() -> bytes:
    """Stored deflate blocks: one changed byte still decompresses; only the gzip CRC knows."""
    raw = tar_bytes(tar_entries(site_files(extra={"datos/tabla.csv": b"1|2|3\n" * 2000})), gz=False)
    data = bytearray(gzip.compress(raw, compresslevel=0, mtime=0))
    at = data.find(b"1|2|3\n1|2|3", 4000)
    data[at] = ord("9")
    return bytes(data)


def _tar_bad_header() -> bytes:
    raw = bytearray(tar_bytes(tar_entries(site_files()), gz=False))
    at = tar_boundary(bytes(raw), "json/main.json")  # the next member's header
    raw[at + 148:at + 156] = b"0000000\0"  # its checksum no longer matches
    return bytes(raw)


def _ratio_zip_member() -> bytes:
    return zipped(("datos/ceros.csv", bytes(4 * 1024 * 1024)))


def _ratio_zip_whole() -> bytes:  # many members, each under the per-member floor
    return zipped(*((f"datos/parte{i:02d}.csv", bytes(900 * 1024)) for i in range(20)))


def _ratio_targz() -> bytes:
    return tarred(member("datos/ceros.csv", bytes(17 * 1024 * 1024)))


def _sums_case(change: Callable[[dict[str, bytes]], dict[str, bytes]]) -> bytes:
    files = site_files()
    listed = change(dict(files))
    return zip_bytes(zip_entries({**files, "SHA256SUMS": sums(listed)}))


def _nfc_nfd() -> bytes:
    name = "municipios/Irimbo-Michoacán.html"
    nfc, nfd = unicodedata.normalize("NFC", name), unicodedata.normalize("NFD", name)
    assert nfc != nfd
    return zipped((nfc, b"<p>uno</p>"), (nfd, b"<p>dos</p>"))


def _tar_invalid_utf8() -> bytes:
    return tarred(member("json/a\udcff\udcfe.json", b"{}"))


LIMITS_FILES = "[package]\nmax_files = 5\n"
LIMITS_BYTES = "[package]\nmax_total_bytes = 65536\n"
LIMITS_FILE = "[package]\nmax_file_bytes = 32768\n"
Z, T = f"{NAME}.zip", f"{NAME}.tar.gz"

def _sidecar_of_other(data: bytes) -> str:
    return f"{hashlib.sha256(data + b'x').hexdigest()}  {Z}\n"


def _no_main() -> bytes:
    return zip_bytes(zip_entries({p: d for p, d in site_files().items() if p != "json/main.json"}))


def _bad_main() -> bytes:
    broken = b'{"ultimoCorte": {"fecha": "08/12/2024", "hora": "20:40"'
    return zip_bytes(zip_entries({**site_files(), "json/main.json": broken}))


def _no_corte() -> bytes:
    return zip_bytes(zip_entries({**site_files(), "json/main.json": b'{"total": 2}'}))


def _same_corte_other_bytes() -> bytes:
    return zip_bytes(zip_entries({**site_files("20:30"), "json/detalle.json": b'{"casillas": 13}'}))


def _incremental(extra: dict[str, bytes] | None = None) -> bytes:
    return zip_bytes(zip_entries({"json/main.json": site_files()["json/main.json"], **(extra or {})}))


def _reserved_in_wrapper() -> bytes:
    files = {**site_files(), "_difusor/x": b"x"}
    return zip_bytes(zip_entries({f"{NAME}/{p}": d for p, d in files.items()}))


def _with_main(main: bytes) -> bytes:
    return zip_bytes(zip_entries({**site_files(), "json/main.json": main}))


def _deep_main() -> bytes:
    depth = 100_000
    return _with_main(b'{"ultimoCorte": {"fecha": "08/12/2024", "hora": "20:40"}, "x": '
                      + b"[" * depth + b"]" * depth + b"}")


def _huge_number_main() -> bytes:
    return _with_main(b'{"ultimoCorte": {"fecha": "08/12/2024", "hora": "20:40"}, "total": '
                      + b"7" * 100_000 + b"}")


def _concatenated_tar(gz: bool) -> bytes:
    """A good newer site, then a second archive glued after its end marker."""
    second = tar_bytes(tar_entries({"json/main.json": b'{"otro": 1}', "extra.html": b"x"}), gz=gz)
    return tar_bytes(tar_entries(site_files()), gz=gz) + second


def _many(n: int, size: int = 1) -> list[tuple[str, bytes]]:
    return [(f"datos/{i}.bin", noise(size, i)) for i in range(n)]


def _tar_many(n: int, size: int = 1) -> bytes:
    return tarred(*(member(p, d) for p, d in _many(n, size)))


CASES: dict[str, Case] = {
    # names
    "absolute-path": Case("absolute_path", Z, lambda: zipped(("/etc/x", b"x"))),
    "absolute-path-tar": Case("absolute_path", T, lambda: tarred(member("/etc/cron.d/x", b"x"))),
    "windows-drive": Case("absolute_path", Z, lambda: zipped(("C:/Windows/x.txt", b"x"))),
    "parent-segment": Case("parent_segment", Z, lambda: zipped(("json/../../etc/x", b"x"))),
    "parent-segment-tar": Case("parent_segment", T, lambda: tarred(member("../fuera.html", b"x"))),
    "noncanonical": Case("noncanonical", Z, lambda: zipped(("json//doble.json", b"{}"))),
    "name-too-long": Case("name_too_long", Z, lambda: zipped(("a" * 300 + ".html", b"x"))),
    "invalid-utf8-zip": Case("invalid_utf8", Z, lambda: _placeholder_zip(b"\xff\xfe\xfd")),
    "invalid-utf8-zip-flagged": Case("invalid_utf8", Z, _utf8_flagged_invalid),
    "invalid-utf8-tar": Case("invalid_utf8", T, _tar_invalid_utf8),
    "control-char": Case("control_char", Z, lambda: zipped(("json/a\x01b.json", b"{}"))),
    "control-char-tar": Case("control_char", T, lambda: tarred(member("json/a\nb.json", b"{}"))),
    "nul-in-name": Case("control_char", Z, lambda: _placeholder_zip(b"a\x00b")),
    "backslash": Case("backslash", Z, lambda: zipped(("json\\evil.json", b"{}"))),
    "reserved-prefix": Case("reserved_prefix", Z, lambda: zipped(("_difusor/health", b"ok"))),
    "reserved-prefix-case": Case("reserved_prefix", Z, lambda: zipped(("_Difusor/status.json", b"{}"))),
    "reserved-prefix-in-wrapper": Case("reserved_prefix", Z, _reserved_in_wrapper),
    "duplicate-zip": Case("duplicate", Z, lambda: zipped(("json/main.json", b'{"otro": 1}'))),
    "duplicate-tar": Case("duplicate", T, lambda: tarred(member("index.html", b"<p>otra</p>"))),
    "duplicate-nfc-nfd": Case("duplicate", Z, _nfc_nfd),
    "file-dir-conflict": Case("path_conflict", Z, lambda: zipped(("a", b"x"), ("a/b", b"y"))),
    # an incremental package whose file is a folder of the live corte, or the other way round
    "incremental-file-over-live-folder": Case("path_conflict", Z, lambda: _incremental({"css": b"x"})),
    "incremental-folder-over-live-file": Case("path_conflict", Z, lambda: _incremental(
        {"index.html/x": b"x"})),
    # member types
    "symlink-tar": Case("symlink", T, lambda: tarred(
        member("json/x.json", kind=tarfile.SYMTYPE, link="/etc/passwd"))),
    "symlink-zip": Case("symlink", Z, lambda: zipped((zip_link(), b"/etc/passwd"))),
    "hardlink-tar": Case("hardlink", T, lambda: tarred(
        member("copia.html", kind=tarfile.LNKTYPE, link="index.html"))),
    "chardev-tar": Case("device", T, lambda: tarred(member("dev/null", kind=tarfile.CHRTYPE))),
    "fifo-tar": Case("device", T, lambda: tarred(member("tuberia", kind=tarfile.FIFOTYPE))),
    # limits
    "too-many-files": Case("too_many_files", Z, lambda: zipped(*_many(8)), LIMITS_FILES),
    "too-many-files-tar": Case("too_many_files", T, lambda: _tar_many(8), LIMITS_FILES),
    "too-many-bytes": Case("too_many_bytes", Z, lambda: zipped(*_many(3, 30_000)), LIMITS_BYTES),
    "too-many-bytes-tar": Case("too_many_bytes", T, lambda: _tar_many(3, 30_000), LIMITS_BYTES),
    "file-too-big": Case("file_too_big", Z, lambda: zipped(*_many(1, 40_000)), LIMITS_FILE),
    "file-too-big-tar": Case("file_too_big", T, lambda: _tar_many(1, 40_000), LIMITS_FILE),
    "zip-bomb-member": Case("ratio", Z, _ratio_zip_member),
    "zip-bomb-whole": Case("ratio", Z, _ratio_zip_whole),
    "targz-bomb": Case("ratio", T, _ratio_targz),
    # damage
    "truncated-zip": Case("truncated", Z, _truncated_zip),
    "truncated-targz": Case("truncated", T, _truncated_targz_mid_member),
    "truncated-targz-at-header": Case("truncated", T, _truncated_targz_at_header),
    "truncated-tar-at-header": Case("truncated", f"{NAME}.tar", _truncated_tar_at_header),
    "tar-bad-header": Case("corrupt", f"{NAME}.tar", _tar_bad_header),
    "tar-concatenated": Case("trailing_data", f"{NAME}.tar", lambda: _concatenated_tar(False)),
    "targz-concatenated": Case("trailing_data", T, lambda: _concatenated_tar(True)),
    "targz-bad-crc": Case("corrupt", T, _targz_bad_crc),
    "corrupt-zip-member": Case("corrupt", Z, _corrupt_member),
    "zip-lying-size": Case("corrupt", Z, _lying_size),
    "encrypted-zip": Case("encrypted", Z, _encrypted),
    "unsupported-method": Case("unsupported_member", Z, _unsupported_method),
    "rar": Case("unsupported_format", f"{NAME}.rar", lambda: b"Rar!\x1a\x07\x01\x00" + noise(2000)),
    "random-bytes": Case("unsupported_format", Z, lambda: noise(4096)),
    "empty": Case("empty", Z, lambda: b""),
    # checksums
    "sidecar-mismatch": Case("checksum_sidecar", Z, zipped, sidecar=_sidecar_of_other),
    "sidecar-malformed": Case("checksum_format", Z, zipped, sidecar=lambda d: "no es una suma\n"),
    "sidecar-required": Case("checksum_missing", Z, zipped, '[package]\nrequire_checksum = "sidecar"\n'),
    "sha256sums-required": Case("checksum_missing", Z, zipped,
                                '[package]\nrequire_checksum = "sha256sums"\n'),
    "sha256sums-mismatch": Case("checksum_inner", Z, lambda: _sums_case(
        lambda f: {**f, "index.html": b"<p>otra cosa</p>"})),
    "sha256sums-missing-file": Case("checksum_inner_missing", Z, lambda: _sums_case(
        lambda f: {**f, "json/fantasma.json": b"{}"})),
    "sha256sums-unlisted": Case("checksum_unlisted", Z, lambda: _sums_case(
        lambda f: {p: d for p, d in f.items() if p != "json/detalle.json"})),
    # content
    "main-json-invalid": Case("json_invalid", Z, _bad_main),
    "other-json-invalid": Case("json_invalid", Z, lambda: zipped(("json/distrito.json", b"{no es json")),
                               '[package]\nvalidate_json = "all"\n'),
    "full-without-main": Case("main_missing", Z, _no_main),
    "main-json-nested-too-deep": Case("json_too_deep", Z, _deep_main),
    "main-json-huge-number": Case("json_number", Z, _huge_number_main),
    "hora-corte-impossible-offset": Case("corte_invalid", Z, lambda: _with_main(
        b'{"fechaCorte": "08 de diciembre de 2024", "horaCorte": "20:40 UTC+99"}')),
    "corte-out-of-range": Case("corte_invalid", Z, lambda: _with_main(
        b'{"ultimoCorte": "9999-12-31T23:59-12:00"}')),
    "future-corte": Case("future_corte", Z, lambda: _with_main(b'{"ultimoCorte": "9999-12-31T23:59"}')),
    "ambiguous-day-month": Case("ambiguous_date", "envio.zip", lambda: _with_main(
        b'{"ultimoCorte": {"fecha": "09/12/2024", "hora": "20:40"}}'), '[corte]\ndate_order = "auto"\n',
        baseline=False),  # the baseline's own 08/12/2024 is just as ambiguous
    "database-without-csv": Case("database_missing", Z, lambda: zip_bytes(zip_entries(
        {"LEEME.txt": b"base de datos"})), '[package]\nkind = "database"\n', baseline=False),
    "no-corte": Case("no_corte", "paquete.zip", _no_corte),
    # corte order
    "older-corte": Case("older_corte", "20241208_2020_PREP.zip", lambda: zipped(hora="20:20")),
    "same-corte-other-bytes": Case("same_corte_different", "20241208_2030_PREP_b.zip",
                                   _same_corte_other_bytes),
    "incremental-without-live": Case("no_base", Z, _incremental, baseline=False),
}


# -- what a refusal must leave behind ---------------------------------------------------------


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links followed) → its bytes."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


def names_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


@dataclass
class Snapshot:
    current: str | None
    release: dict[str, bytes]
    releases: set[str]
    manifests: set[str]
    objects: set[str]

    @classmethod
    def take(cls, site: Site) -> Snapshot:
        layout = site.store
        current = os.readlink(layout.current) if layout.current.is_symlink() else None
        site = os.readlink(layout.site) if layout.site.is_symlink() else None
        release = tree(layout.root / site) if site else {}
        releases = {p.name for p in layout.releases.iterdir()}
        return cls(current, release, releases, names_under(layout.manifests), names_under(layout.objects))


_ENGLISH = ("Traceback", "Error -", "Bad CRC", "while ", "invalid ", "unexpected end", "end of data",
            "is not a", "File is not", "Errno", "codec", "not supported", "bad checksum", "header",
            "Compressed file", "zlib", "empty file")
_SPANISH = re.compile(
    r"\b(el|la|los|las|de|del|no|es|un|una|en|que|con|se|solo|más|ruta|rutas|paquete|archivo|nombre)\b"
)


def spanish_problems(message: str, *, strict: bool = True) -> list[str]:
    """What is wrong with a refusal as a line for the operator (``strict``: no library English)."""
    problems = []
    if not message.strip():
        problems.append("vacío")
    if "\n" in message or "\r" in message:
        problems.append("más de una línea")
    if not _SPANISH.search(message):
        problems.append("no parece español")
    if strict:
        problems += [f"texto de biblioteca en inglés: {w!r}" for w in _ENGLISH if w in message]
    return problems


def publish_baseline(site: Site) -> None:
    files = site_files("20:30")
    path = site.root / "incoming-packages" / BASE_NAME
    path.parent.mkdir(exist_ok=True)
    data = zip_bytes(zip_entries({**files, "SHA256SUMS": sums(files)}))
    path.write_bytes(data)
    (path.parent / (BASE_NAME + ".sha256")).write_text(f"{hashlib.sha256(data).hexdigest()}  {BASE_NAME}\n")
    outcome = site.publisher.publish(path)
    assert outcome.status == "published"


def _folder(site: Site) -> Path:
    folder = site.root / "incoming-packages"
    folder.mkdir(exist_ok=True)
    return folder


def refuse(site: Site, case: Case) -> tuple[PackageRefused, Path]:
    path = case.build(_folder(site))
    with pytest.raises(PackageRefused) as caught:
        site.publisher.publish(path)
    return caught.value, path


@pytest.fixture
def hostile_site(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Site, Case]]:
    case: Case = request.param
    s = make_site(tmp_path / "difusor", extra_toml=FAST + case.toml)
    yield s, case
    s.ledger.close()


@pytest.mark.parametrize("hostile_site", list(CASES.values()), ids=list(CASES), indirect=True)
def test_hostile_package_is_refused_and_changes_nothing(hostile_site: tuple[Site, Case]) -> None:
    site, case = hostile_site
    if case.baseline:
        publish_baseline(site)
    before = Snapshot.take(site)
    assert (before.current is not None) == case.baseline

    refusal, path = refuse(site, case)
    original = path.read_bytes()

    # the rule it broke, said once, in Spanish
    assert refusal.code == case.code, refusal.message
    assert refusal.exit_code == 2
    assert spanish_problems(refusal.message, strict=False) == []  # English: see the test below

    # the live corte did not move, and its files are the same bytes
    after = Snapshot.take(site)
    assert after.current == before.current
    assert after.release == before.release
    assert after.releases == before.releases
    assert after.manifests == before.manifests
    if not case.baseline:
        assert not site.store.current.exists()

    # nothing of the hostile package reached the store; no staging left behind
    assert after.objects == before.objects
    assert list(site.store.tmp.iterdir()) == []
    assert list(site.store.build.iterdir()) == []
    assert list(site.state.incoming.iterdir()) == []

    # the original is kept, unmodified, with its reason beside it
    quarantine = site.state.quarantine
    kept = [p for p in quarantine.iterdir()
            if not p.name.endswith((".motivo.txt", ".sha256")) and p.read_bytes() == original]
    assert len(kept) == 1, sorted(p.name for p in quarantine.iterdir())
    motivo = (quarantine / (kept[0].name + ".motivo.txt")).read_text(encoding="utf-8")
    assert refusal.message in motivo
    assert case.code in motivo
    assert hashlib.sha256(original).hexdigest() in motivo

    # the ledger says so
    row = site.ledger.packages(limit=1)[0]
    assert row["name"] == path.name
    assert row["state"] == "refused"
    assert row["reason_code"] == case.code
    assert row["reason"] == refusal.message
    assert row["kept_at"] == str(kept[0])
    refused = [e for e in site.ledger.events("refused") if e["package_id"] == row["id"]]
    assert len(refused) == 1
    assert refused[0]["detail"]["code"] == case.code
    assert site.ledger.events("failed") == []


def test_corpus_is_broad() -> None:
    assert len(CASES) >= 24
    assert len({c.code for c in CASES.values()}) >= 24


@pytest.mark.slow
def test_refusal_messages_are_one_spanish_line(tmp_path: Path) -> None:
    """What the operator reads on election night: one line, in Spanish, no library English."""
    bad: dict[str, str] = {}
    for name, case in CASES.items():
        site = make_site(tmp_path / name, extra_toml=FAST + case.toml)
        try:
            if case.baseline:
                publish_baseline(site)
            path = case.build(_folder(site))
            try:
                site.publisher.publish(path)
            except PackageRefused as refusal:
                problems = spanish_problems(refusal.message)
                if problems:
                    bad[name] = f"{refusal.message!r}: {', '.join(problems)}"
            except Exception as exc:  # an unexpected error is not an operator message either
                bad[name] = f"{type(exc).__name__}: {exc}"
            else:
                bad[name] = "publicado"
        finally:
            site.ledger.close()
    assert bad == {}, "\n".join(f"{k}: {v}" for k, v in sorted(bad.items()))


def test_same_corte_other_bytes_publishes_with_force(site: Site) -> None:
    publish_baseline(site)
    first = os.readlink(site.store.current)
    files = {**site_files("20:30"), "json/detalle.json": b'{"casillas": 13, "corregido": true}'}
    path = site.write_package("20241208_2030_PREP_corregido.zip", files)
    with pytest.raises(PackageRefused) as caught:
        site.publisher.publish(path)
    assert caught.value.code == "same_corte_different"
    assert "--force" in caught.value.message
    assert os.readlink(site.store.current) == first

    outcome = site.publisher.publish(path, force=True)
    assert outcome.status == "published"
    assert outcome.release_id != first.rsplit("/", 1)[-1]
    assert outcome.release_id.startswith("20241208_2030")
    assert os.readlink(site.store.current) == f"manifests/{outcome.release_id}.json"
    live = site.store.site
    assert (live / "json/detalle.json").read_bytes() == files["json/detalle.json"]
    assert site.ledger.packages(limit=1)[0]["state"] == "activated"


def test_older_corte_publishes_with_force(site: Site) -> None:
    publish_baseline(site)
    path = site.write_package("20241208_2020_PREP.zip", site_files("20:20"))
    with pytest.raises(PackageRefused):
        site.publisher.publish(path)
    outcome = site.publisher.publish(path, force=True)
    assert outcome.release_id == "20241208_2020"
    assert os.readlink(site.store.current) == "manifests/20241208_2020.json"


def test_same_corte_same_bytes_is_a_noop(site: Site) -> None:
    publish_baseline(site)
    before = Snapshot.take(site)
    again = site.root / "incoming-packages" / "copia.zip"
    again.write_bytes((site.root / "incoming-packages" / BASE_NAME).read_bytes())
    outcome = site.publisher.publish(again)
    assert outcome.status == "unchanged"
    assert Snapshot.take(site) == before
    assert site.ledger.packages(limit=1)[0]["state"] == "duplicate"
    assert list(site.state.quarantine.iterdir()) == []


def test_hostile_package_cases_would_publish_without_their_defect(site: Site) -> None:
    """The corpus is honest: the same site, defect removed, goes live after the baseline."""
    publish_baseline(site)
    for fmt, name in (("zip", Z), ("tar.gz", T), ("tar", f"{NAME}.tar")):
        files = site_files(extra={"datos/ruido.bin": noise(1000)})
        data = zip_bytes(zip_entries(files)) if fmt == "zip" else tar_bytes(tar_entries(files), fmt != "tar")
        path = _folder(site) / f"bueno-{name}"
        path.write_bytes(data)
        outcome = site.publisher.publish(path, force=True)
        assert outcome.status in ("published", "unchanged")
    assert os.readlink(site.store.current).startswith("manifests/20241208_2040")
