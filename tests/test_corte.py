"""The corte's date and time: where it is read from, in which order, and in which zone.

The site shows the corte's time at all times and a newer corte replaces an older one: a wrong
hour (or zone) shows the public a wrong time and can refuse a good package as "older".
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import realdata

from difusor.config import CorteSettings, PackageSettings
from difusor.demo.packages import archive_bytes
from difusor.errors import PackageRefused
from difusor.package import corte
from difusor.package.reader import VerifiedPackage, read_package
from difusor.store.objects import ObjectStore

MX = ZoneInfo("America/Mexico_City")
UTC_5 = timezone(timedelta(hours=-5))
UTC_6 = timezone(timedelta(hours=-6))
HOUR = timedelta(hours=1)

Read = Callable[..., VerifiedPackage]


@pytest.fixture
def read(tmp_path: Path) -> Read:
    staging = ObjectStore(tmp_path / "objects", fsync=False).staging(tmp_path / "tmp")

    def run(files: dict[str, bytes] | bytes, name: str, *, pointers: tuple[str, ...] = (),
            zone: str = "America/Mexico_City", **corte_options: object) -> VerifiedPackage:
        data = files if isinstance(files, bytes) else archive_bytes(files, "zip")
        path = tmp_path / "in" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return read_package(
            path, name=name, package_sha256=hashlib.sha256(data).hexdigest(), sidecar_text=None,
            settings=PackageSettings(),
            corte_settings=CorteSettings(json_pointers=list(pointers), **corte_options),
            zone=ZoneInfo(zone), sink=staging,
        )
    return run


def js(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def ine2018(fecha: str, hora: str, **more: object) -> bytes:
    return js({"horaCorte": hora, "fechaCorte": fecha, "cortePrueba": False, **more})


def ine2024(fecha: str, hora: str, **more: object) -> bytes:
    return js({"ultimoCorte": {"fecha": fecha, "hora": hora}, **more})


def best(data: bytes, zone: ZoneInfo = MX) -> tuple[int, datetime, str]:
    return min(corte.from_json_conventions(data, zone), key=lambda t: t[0])


INDEX = b"<!doctype html><title>PREP</title>"

# -- INE 2018: fechaCorte / horaCorte ---------------------------------------------------------

MONTHS = [
    ("enero", 1), ("febrero", 2), ("marzo", 3), ("abril", 4), ("mayo", 5), ("junio", 6),
    ("julio", 7), ("agosto", 8), ("septiembre", 9), ("setiembre", 9), ("octubre", 10),
    ("noviembre", 11), ("diciembre", 12),
    ("Julio", 7), ("DICIEMBRE", 12), ("ene", 1), ("sept", 9), ("dic.", 12),
]


@pytest.mark.parametrize(("mes", "month"), MONTHS, ids=[m for m, _ in MONTHS])
def test_fecha_corte_every_spanish_month(mes: str, month: int) -> None:
    rank, when, which = best(ine2018(f"05 de {mes} de 2018", "21:04"))
    assert which == "fechaCorte/horaCorte" and rank == 0
    assert when.replace(tzinfo=None) == datetime(2018, month, 5, 21, 4)
    # Mexico City kept summer time in 2018: April to October were UTC-5, the rest UTC-6
    assert when.utcoffset() == (-5 if 4 <= month <= 10 else -6) * HOUR


def test_fecha_corte_as_ine_2018_wrote_it() -> None:
    _, when, _ = best(ine2018("01 de julio de 2018", "21:04", archivoCorte="20180701_2104_PREP.zip"))
    assert when == datetime(2018, 7, 1, 21, 4, tzinfo=UTC_5)


def test_fecha_corte_with_seconds_and_single_digit_day() -> None:
    _, when, _ = best(ine2018("2 de julio de 2018", "08:05:30"))
    assert when == datetime(2018, 7, 2, 8, 5, 30, tzinfo=UTC_5)


def test_unknown_month_is_no_corte() -> None:
    assert corte.from_json_conventions(ine2018("01 de julai de 2018", "21:04"), MX) == []
    assert corte.parse_date_time("31 de febrero de 2018", "10:00", MX) is None


# -- INE 2024: ultimoCorte --------------------------------------------------------------------


def test_ultimo_corte_object() -> None:
    rank, when, which = best(ine2024("08/12/2024", "20:30"))
    assert (rank, which) == (1, "ultimoCorte")
    assert when == datetime(2024, 12, 8, 20, 30, tzinfo=UTC_6)


def test_ultimo_corte_one_level_down() -> None:
    _, when, _ = best(js({"resumen": {"ultimoCorte": {"fecha": "02/06/2024", "hora": "20:00"}}}))
    assert when == datetime(2024, 6, 2, 20, 0, tzinfo=UTC_6)  # no summer time since 2022


def test_ultimo_corte_string() -> None:
    _, when, _ = best(js({"ultimoCorte": "08/12/2024 21:10"}))
    assert when == datetime(2024, 12, 8, 21, 10, tzinfo=UTC_6)


# -- names: archivoCorte and the package's own name -------------------------------------------


def test_archivo_corte() -> None:
    rank, when, which = best(js({"archivoCorte": "20180701_2104_PREP.zip"}))
    assert (rank, which) == (2, "archivoCorte")
    assert when == datetime(2018, 7, 1, 21, 4, tzinfo=UTC_5)


@pytest.mark.parametrize(("name", "expected"), [
    ("20241208_2030_PREP_IRIMBO.zip", datetime(2024, 12, 8, 20, 30, tzinfo=UTC_6)),
    ("PREP_20241208_2030.tar.gz", datetime(2024, 12, 8, 20, 30, tzinfo=UTC_6)),
    ("20180701_2104_PREP.tgz", datetime(2018, 7, 1, 21, 4, tzinfo=UTC_5)),
])
def test_package_name_stamp(read: Read, name: str, expected: datetime) -> None:
    v = read({"index.html": INDEX, "json/main.json": b'{"total": 1}'}, name)
    assert v.corte.when == expected
    assert name in v.corte.source


@pytest.mark.parametrize("name", ["2024120_2030.zip", "20241308_2030.zip", "120241208_2030.zip", "p.zip"])
def test_not_a_stamp(name: str) -> None:
    assert corte.from_stamp(name, MX) is None


# -- the database CSV line --------------------------------------------------------------------


def test_csv_line_carries_its_own_offset() -> None:
    head = b"sep=|\nAYUNTAMIENTOS\n3/6/2019 09:15 (UTC-5)\nACTAS_ESPERADAS|ACTAS_REGISTRADAS\n"
    when = corte.from_csv_head(head)
    assert when == datetime(2019, 6, 3, 9, 15, tzinfo=UTC_5)
    assert when.utcoffset() == -5 * HOUR


def test_csv_offset_wins_over_the_site_zone() -> None:
    when = corte.from_csv_head(b"sep=|\nGUBERNATURA\n9/12/2024 01:30 (UTC-5)\n")
    assert when == datetime(2024, 12, 9, 6, 30, tzinfo=UTC)
    assert corte.corte_id(when, MX) == "20241209_0030"  # December: Mexico City is UTC-6


def test_csv_in_a_package(read: Read) -> None:
    csv = "sep=|\nGUBERNATURA\n3/6/2019 09:15 (UTC-5)\nACTAS|CAT\u00c1LOGO\n".encode("latin-1")
    v = read({"base/PUE_GUB_2019.csv": csv}, "envio.zip")
    assert v.corte.when == datetime(2019, 6, 3, 9, 15, tzinfo=UTC_5)
    assert "CSV" in v.corte.source


# Every order authorities write the corte line in; the zone with or without spaces.
CSV_LINES = {
    "2019/06/03 05:47 (UTC-5)": datetime(2019, 6, 3, 5, 47, tzinfo=UTC_5),  # year first
    "2019-06-03 05:47 (UTC-5)": datetime(2019, 6, 3, 5, 47, tzinfo=UTC_5),
    "2019/6/3 05:47 (UTC -5)": datetime(2019, 6, 3, 5, 47, tzinfo=UTC_5),
    "03-06-2019 05:47 (UTC-5)": datetime(2019, 6, 3, 5, 47, tzinfo=UTC_5),
    "3/6/2019 09:15 (UTC - 5)": datetime(2019, 6, 3, 9, 15, tzinfo=UTC_5),
    "25/12/2024 23:10 (UTC-6)": datetime(2024, 12, 25, 23, 10, tzinfo=UTC_6),
    "2024/12/25 23:10:05 (GMT-06:00)": datetime(2024, 12, 25, 23, 10, 5, tzinfo=UTC_6),
}


@pytest.mark.parametrize(("line", "expected"), list(CSV_LINES.items()), ids=list(CSV_LINES))
def test_csv_line_in_every_order(line: str, expected: datetime) -> None:
    head = f"sep=|\nGUBERNATURA\n{line}\nACTAS_ESPERADAS|ACTAS_REGISTRADAS\n".encode("latin-1")
    assert corte.from_csv_head(head) == expected


def csv_with(line: str) -> dict[str, bytes]:
    return {"base/PUE_GUB_2019.csv": f"sep=|\nGUBERNATURA\n{line}\nACTAS|CAT\u00c1LOGO\n".encode("latin-1")}


def test_day_and_month_both_twelve_or_less_are_never_guessed(read: Read) -> None:
    """3/6 is 3 June in Mexico and 6 March elsewhere: with ``date_order = "auto"`` the line is
    refused rather than guessed; a day over twelve settles it."""
    with pytest.raises(PackageRefused) as caught:
        read(csv_with("3/6/2019 09:15 (UTC-5)"), "envio.zip", date_order="auto")
    assert caught.value.code == "ambiguous_date"
    assert "3/6/2019" in caught.value.message and "corte.date_order" in caught.value.message
    late = read(csv_with("13/6/2019 09:15 (UTC-5)"), "envio.zip", date_order="auto")
    assert late.corte.when == datetime(2019, 6, 13, 9, 15, tzinfo=UTC_5)
    us = read(csv_with("6/13/2019 09:15 (UTC-5)"), "envio.zip", date_order="auto")
    assert us.corte.when == datetime(2019, 6, 13, 9, 15, tzinfo=UTC_5)


def test_configured_month_first_order(read: Read) -> None:
    v = read(csv_with("3/6/2019 09:15 (UTC-5)"), "envio.zip", date_order="mdy")
    assert v.corte.when == datetime(2019, 3, 6, 9, 15, tzinfo=UTC_5)
    # year first is never read month/day swapped, whatever the order configured for D/M
    v = read(csv_with("2019/06/03 05:47 (UTC-5)"), "envio.zip", date_order="mdy")
    assert v.corte.when == datetime(2019, 6, 3, 5, 47, tzinfo=UTC_5)


def test_line_impossible_in_the_configured_order_is_refused(read: Read) -> None:
    with pytest.raises(PackageRefused) as caught:
        read(csv_with("6/13/2019 09:15 (UTC-5)"), "envio.zip")  # not day/month/year
    assert caught.value.code == "corte_invalid"
    assert "6/13/2019" in caught.value.message


def test_configured_order_applies_to_json_dates_too(read: Read) -> None:
    files = {"index.html": INDEX, "json/main.json": ine2024("03/06/2024", "20:30")}
    assert read(files, "p.zip").corte.when.month == 6
    assert read(files, "p.zip", date_order="mdy").corte.when.month == 3
    with pytest.raises(PackageRefused) as caught:
        read(files, "p.zip", date_order="auto")
    assert caught.value.code == "ambiguous_date"


@pytest.mark.parametrize(("hora", "code"), [("20:30 UTC+99", "corte_invalid"),
                                            ("20:30 (UTC-25:00)", "corte_invalid")])
def test_impossible_offset_is_refused(read: Read, hora: str, code: str) -> None:
    files = {"index.html": INDEX, "json/main.json": ine2018("08 de diciembre de 2024", hora)}
    with pytest.raises(PackageRefused) as caught:
        read(files, "20241208_2030_PREP.zip")
    assert caught.value.code == code
    assert "UTC" in caught.value.message


@pytest.mark.parametrize("text", ["9999-12-31T23:59-12:00", "0001-01-01T00:10+05:00"])
def test_corte_outside_the_calendar_is_refused(read: Read, text: str) -> None:
    files = {"index.html": INDEX, "json/main.json": js({"ultimoCorte": text})}
    with pytest.raises(PackageRefused) as caught:
        read(files, "p.zip")
    assert caught.value.code == "corte_invalid"


def test_broken_iso_offset_is_not_read_as_local_time(read: Read) -> None:
    files = {"index.html": INDEX, "json/main.json": js({"ultimoCorte": "2024-12-08T20:30+99:00"})}
    with pytest.raises(PackageRefused) as caught:
        read(files, "20241208_2030_PREP.zip")
    assert caught.value.code == "corte_invalid"


def test_bad_corte_in_a_file_that_is_not_the_source_does_not_matter(read: Read) -> None:
    files = {"index.html": INDEX, "json/main.json": ine2024("08/12/2024", "20:30"),
             "json/viejo.json": ine2018("08 de diciembre de 2024", "20:30 UTC+99")}
    assert read(files, "p.zip").corte.when == datetime(2024, 12, 8, 20, 30, tzinfo=UTC_6)


def test_hostile_json_beside_the_site_does_not_stop_the_corte_scan() -> None:
    deep = b'{"fechaCorte": "01 de julio de 2018", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert corte.from_json_conventions(deep, MX) == []
    huge = b'{"fechaCorte": "01 de julio de 2018", "n": ' + b"9" * 100_000 + b"}"
    assert corte.from_json_conventions(huge, MX) == []


# -- configured pointers ----------------------------------------------------------------------


def test_pointer_to_a_string_wins_over_conventions(read: Read) -> None:
    main = js({"ultimoCorte": {"fecha": "08/12/2024", "hora": "20:30"},
               "corte": {"fechaHora": "2024-12-08T20:45:00"}})
    v = read({"index.html": INDEX, "json/main.json": main}, "20241208_2010_PREP.zip",
             pointers=("json/main.json#/corte/fechaHora",))
    assert v.corte.when == datetime(2024, 12, 8, 20, 45, tzinfo=UTC_6)
    assert v.corte.source == "json/main.json#/corte/fechaHora"


def test_pointer_to_a_fecha_hora_object_in_another_file(read: Read) -> None:
    files = {
        "index.html": INDEX,
        "json/main.json": ine2018("08 de diciembre de 2024", "20:30"),
        "json/estado.json": js({"cortes": [{"fecha": "08/12/2024", "hora": "20:50"}]}),
    }
    v = read(files, "20241208_2010_PREP.zip", pointers=("json/estado.json#/cortes/0",))
    assert v.corte.when == datetime(2024, 12, 8, 20, 50, tzinfo=UTC_6)


def test_pointer_after_the_wrapper_is_stripped(read: Read) -> None:
    main = js({"corte": {"fechaHora": "2024-12-08T20:45:00-06:00"}})
    files = {f"20241208_2030_PREP/{p}": d for p, d in {"index.html": INDEX, "json/main.json": main}.items()}
    v = read(files, "envio.zip", pointers=("json/main.json#/corte/fechaHora",))
    assert v.wrapper == "20241208_2030_PREP"
    assert v.corte.when == datetime(2024, 12, 8, 20, 45, tzinfo=UTC_6)


def test_pointer_that_misses_falls_back_to_conventions(read: Read) -> None:
    v = read({"index.html": INDEX, "json/main.json": ine2024("08/12/2024", "20:30")}, "p.zip",
             pointers=("json/main.json#/no/existe", "json/otro.json#/x"))
    assert v.corte.when == datetime(2024, 12, 8, 20, 30, tzinfo=UTC_6)
    assert "ultimoCorte" in v.corte.source


# -- precedence between sources ---------------------------------------------------------------


def _nested_db(line: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("BASE/PUE_GUB.csv", b"sep=|\nGUBERNATURA\n" + line + b"\nA|B\n")
    return buf.getvalue()


def _csv(hhmm: str) -> bytes:
    return f"sep=|\nGUBERNATURA\n8/12/2024 {hhmm} (UTC-6)\nA|B\n".encode()


PRECEDENCE = {
    # (files, package name, pointers) → the hour that must win
    "pointer>fechaCorte": (
        {"json/main.json": js({"fechaCorte": "08 de diciembre de 2024", "horaCorte": "20:10",
                                "mio": "2024-12-08 20:01"})}, "p.zip", ("json/main.json#/mio",), "20:01"),
    "fechaCorte>ultimoCorte": (
        {"json/main.json": js({"fechaCorte": "08 de diciembre de 2024", "horaCorte": "20:02",
                                "ultimoCorte": {"fecha": "08/12/2024", "hora": "20:10"}})},
        "p.zip", (), "20:02"),
    "ultimoCorte>archivoCorte": (
        {"json/main.json": js({"archivoCorte": "20241208_2010_PREP.zip",
                                "ultimoCorte": {"fecha": "08/12/2024", "hora": "20:03"}})},
        "p.zip", (), "20:03"),
    "date-in-any-json>archivoCorte-in-main": (
        {"json/main.json": js({"archivoCorte": "20241208_2010_PREP.zip"}),
         "json/detalle.json": ine2024("08/12/2024", "20:04")}, "p.zip", (), "20:04"),
    "archivoCorte>package-name": (
        {"json/main.json": js({"archivoCorte": "20241208_2005_PREP.zip"})}, "20241208_2010_PREP.zip", (),
        "20:05"),
    "package-name>csv": (
        {"json/main.json": b"{}", "base/a.csv": _csv("20:10")}, "20241208_2006_PREP.zip", (), "20:06"),
    "csv>nested-zip": (
        {"json/main.json": b"{}", "base/a.csv": _csv("20:07"),
         "base/datos.zip": _nested_db(b"8/12/2024 20:10 (UTC-6)")}, "p.zip", (), "20:07"),
    "nested-zip-last": (
        {"json/main.json": b"{}", "base/datos.zip": _nested_db(b"8/12/2024 20:08 (UTC-6)")}, "p.zip", (),
        "20:08"),
    "main.json-first": (
        {"json/main.json": ine2024("08/12/2024", "20:09"),
         "json/otro.json": ine2024("08/12/2024", "20:10")}, "p.zip", (), "20:09"),
}


@pytest.mark.parametrize("case", list(PRECEDENCE.values()), ids=list(PRECEDENCE))
def test_precedence_between_sources(read: Read, case: tuple) -> None:
    files, name, pointers, hhmm = case
    v = read({"index.html": INDEX, **files}, name, pointers=pointers)
    hour, minute = map(int, hhmm.split(":"))
    assert v.corte.when == datetime(2024, 12, 8, hour, minute, tzinfo=UTC_6), v.corte.source


def test_no_source_is_refused(read: Read) -> None:
    with pytest.raises(PackageRefused) as caught:
        read({"index.html": INDEX, "json/main.json": b'{"total": 1}', "base/a.csv": b"A|B\n1|2\n"}, "p.zip")
    assert caught.value.code == "no_corte"
    assert "corte.json_pointers" in caught.value.message


# -- zones and ids ----------------------------------------------------------------------------


def test_zone_follows_mexico_city_rules() -> None:
    july = corte.parse_date_time("01 de julio de 2018", "21:04", MX)
    december = corte.parse_date_time("08/12/2024", "20:30", MX)
    assert july is not None and december is not None
    assert july.utcoffset() == -5 * HOUR
    assert december.utcoffset() == -6 * HOUR
    assert july.astimezone(UTC) == datetime(2018, 7, 2, 2, 4, tzinfo=UTC)
    assert december.astimezone(UTC) == datetime(2024, 12, 9, 2, 30, tzinfo=UTC)


def test_site_zone_is_configurable(read: Read) -> None:
    files = {"index.html": INDEX, "json/main.json": ine2024("08/12/2024", "20:30")}
    v = read(files, "p.zip", zone="America/Cancun")  # Quintana Roo: UTC-5 all year
    assert v.corte.when.utcoffset() == -5 * HOUR
    assert v.corte.when == datetime(2024, 12, 8, 20, 30, tzinfo=UTC_5)


@pytest.mark.parametrize("hora", ["08:30 p.m.", "08:30 PM", "8:30 pm"])
def test_twelve_hour_clock_is_never_read_as_morning(hora: str) -> None:
    """An evening corte shown as 08:30 would be wrong by twelve hours (and "older" than 20:20)."""
    when = corte.parse_date_time("08/12/2024", hora, MX)
    assert when is None or when == datetime(2024, 12, 8, 20, 30, tzinfo=UTC_6)


def test_explicit_offset_in_the_data_wins() -> None:
    when = corte.parse_date_time("08/12/2024", "20:30 (UTC-5)", MX)
    assert when == datetime(2024, 12, 8, 20, 30, tzinfo=UTC_5)
    iso = corte.parse_date_time("2024-12-08T20:30:00Z", None, MX)
    assert iso == datetime(2024, 12, 8, 20, 30, tzinfo=UTC)


@pytest.mark.parametrize(("when", "expected"), [
    (datetime(2024, 12, 8, 20, 30, tzinfo=MX), "20241208_2030"),
    (datetime(2024, 12, 8, 20, 30, 15, tzinfo=MX), "20241208_203015"),
    (datetime(2024, 12, 9, 2, 30, tzinfo=UTC), "20241208_2030"),
    (datetime(2018, 7, 2, 2, 4, tzinfo=UTC), "20180701_2104"),
    (datetime(2024, 12, 8, 20, 30, tzinfo=UTC_5), "20241208_1930"),
    (datetime(2024, 1, 1, 0, 5, tzinfo=MX), "20240101_0005"),
])
def test_corte_id(when: datetime, expected: str) -> None:
    assert corte.corte_id(when, MX) == expected


# -- real data --------------------------------------------------------------------------------


def test_every_ine_2018_corte(read: Read) -> None:
    files = sorted(realdata("ine2018-presidente").glob("*.json"))
    assert len(files) >= 90
    wrong = {}
    for f in files:
        stamp = f.name[:13]
        expected = datetime.strptime(stamp, "%Y%m%d_%H%M").replace(tzinfo=MX)
        data = f.read_bytes()
        archivo = json.loads(data)["archivoCorte"]
        v = read({"json/main.json": data}, "paquete.zip")  # no stamp in the package name
        found = (corte.corte_id(v.corte.when, MX), v.corte.source,
                 corte.corte_id(corte.from_stamp(archivo, MX), MX))
        if found != (stamp, "json/main.json: fechaCorte/horaCorte", stamp):
            wrong[f.name] = found
        assert v.corte.when.utcoffset() == -5 * HOUR
        assert v.corte.when == expected
    assert wrong == {}


PUEBLA = datetime(2019, 6, 3, 9, 15, tzinfo=UTC_5)


def _puebla() -> list[Path]:
    zips = sorted(realdata("puebla2019-extraordinaria").glob("*.zip"))
    assert len(zips) == 2
    return zips


def test_puebla_packages_as_named(read: Read) -> None:
    for z in _puebla():
        v = read(z.read_bytes(), z.name)
        assert v.corte.when == PUEBLA, z.name
        assert v.corte.when.utcoffset() == -5 * HOUR
        assert v.wrapper == z.name.removesuffix(".zip")
        assert v.kind == "incremental"
        assert z.name in v.corte.source  # the name outranks the CSV line; both say 09:15


def test_puebla_packages_renamed_read_the_csv_line(read: Read) -> None:
    for z in _puebla():
        v = read(z.read_bytes(), "base-de-datos.zip")
        assert v.corte.when == PUEBLA, z.name
        assert v.corte.when.utcoffset() == -5 * HOUR
        assert "CSV" in v.corte.source and ".csv" in v.corte.source


def test_puebla_database_nested_in_a_package(read: Read) -> None:
    for z in _puebla():
        files = {"LEEME.txt": b"base de datos del PREP", "datos/base.zip": z.read_bytes()}
        v = read(files, "envio.zip")
        assert v.corte.when == PUEBLA, z.name
        assert v.corte.source.startswith("datos/base.zip/")
        assert "CSV" in v.corte.source


def test_real_database_csv_with_year_first(read: Read) -> None:
    """A real authority's database CSV (sep=|, Latin-1) whose corte line puts the year first,
    sent under a name without a date: the line alone gives the corte."""
    for z in _puebla():
        with zipfile.ZipFile(z) as zf:
            files = {i.filename.split("/", 1)[1]: zf.read(i) for i in zf.infolist() if not i.is_dir()}
        for path, data in files.items():
            if path.lower().endswith(".csv") and b"(UTC-5)" in data[:200]:
                files[path] = data.replace(b"3/6/2019 09:15 (UTC-5)", b"2019/06/03 05:47 (UTC-5)", 1)
                assert files[path] != data
        v = read(files, "base-de-datos.zip")
        assert v.corte.when == datetime(2019, 6, 3, 5, 47, tzinfo=UTC_5), z.name
        assert ".csv" in v.corte.source
