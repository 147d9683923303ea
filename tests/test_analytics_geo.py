"""Geolocation as ranges in DuckDB: the same answers as maxminddb's own reading of the mmdb,
addresses read as ``inet_pton`` reads them, the ranges built once per mmdb."""

from __future__ import annotations

import ipaddress
import os
import random
import socket
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import duckdb
import pytest

from difusor.analytics import addresses, geocache
from difusor.analytics.geo import RESERVED, answer_of, default_db, state_name
from difusor.errors import LogFormatError
from difusor.paths import user_temp_folder

TELMEX_CDMX = "189.130.0.1"
TOTALPLAY_CDMX = "187.190.40.1"
AXTEL_NL = "200.52.1.1"
MICH = "148.216.0.1"
US = "8.8.8.8"


def ranges(scratch: Path) -> AbstractContextManager[Path]:
    return geocache.ranges_file(default_db(), scratch)


@pytest.fixture(scope="module")
def con(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    db = duckdb.connect()
    scratch = tmp_path_factory.mktemp("geo")
    addresses.prepare(db, geocache.cache_name(default_db()), lambda: ranges(scratch))
    yield db
    db.close()


def test_known_public_addresses(con: duckdb.DuckDBPyConnection) -> None:
    assert addresses.places(con, [
        TELMEX_CDMX, TOTALPLAY_CDMX, AXTEL_NL, MICH, "38.123.192.1", "2806:2f0::1",
        "::ffff:" + AXTEL_NL, US]) == [
        ("MX", "Ciudad de México"), ("MX", "Ciudad de México"), ("MX", "Nuevo León"),
        ("MX", "Michoacán"), ("MX", "Estado de México"),  # DB-IP says "México"
        ("MX", "Ciudad de México"), ("MX", "Nuevo León"), ("US", None)]
    private = ["10.1.2.3", "127.0.0.1", "192.168.1.1", "100.64.0.1", "::1", "fe80::1",
               "no-es-ip", "", "::ffff:10.0.0.1", "189.130.0.999", "189.130.0.x"]
    assert addresses.places(con, private) == [(None, None)] * len(private)


def test_maxmind_style_subdivisions_map_to_canonical_names() -> None:
    assert state_name({"iso_code": "MIC", "names": {"en": "Michoacán"}}) == "Michoacán"
    assert state_name({"iso_code": "DIF"}) == "Ciudad de México"
    assert state_name({"names": {"en": "State of Mexico"}}) == "Estado de México"
    assert state_name({"names": {"es": "Veracruz de Ignacio de la Llave"}}) == "Veracruz"
    assert state_name({"names": {"en": "Texas"}}) is None


# -- the same answers as maxminddb -------------------------------------------------------

V6_PREFIXES = [0x2806, 0x2A00, 0x2A02, 0x2001, 0x2600, 0x2604, 0x2800, 0x2C0F, 0x2400, 0x2002,
               0x2003, 0x2A01]


def random_addresses(n: int, seed: int) -> list[str]:
    """Half IPv4 (some written IPv4-mapped, some neighbours of others: the edges of ranges),
    half IPv6 in allocated space (6to4 and Teredo included, where the tree repeats IPv4)."""
    rng = random.Random(seed)
    found: list[str] = []
    while len(found) < n:
        kind = rng.random()
        if kind < 0.4:
            found.append(str(ipaddress.IPv4Address(rng.getrandbits(32))))
        elif kind < 0.45:
            found.append("::ffff:" + str(ipaddress.IPv4Address(rng.getrandbits(32))))
        elif kind < 0.5 and found:
            near = ipaddress.ip_address(found[rng.randrange(len(found))].removeprefix("::ffff:"))
            found.append(str(ipaddress.ip_address(
                (int(near) ^ rng.getrandbits(8)) & ((1 << near.max_prefixlen) - 1))))
        elif kind < 0.52:
            found.append(f"2001:0:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}::1")
        elif kind < 0.98:
            found.append(str(ipaddress.IPv6Address(
                (rng.choice(V6_PREFIXES) << 112) | rng.getrandbits(112))))
        else:
            found.append(str(ipaddress.IPv6Address(rng.getrandbits(128))))
    return found


_RESERVED = {v: [ipaddress.ip_network((net, plen)) for net, plen in blocks]
             for v, blocks in RESERVED.items()}


def maxminddb_answers(ips: list[str]) -> list[tuple[str | None, str | None]]:
    """maxminddb's own tree walk and record decoding (each record decoded once: that is
    what costs 0.1 ms), an IPv4-mapped address looked up as its IPv4 address."""
    import maxminddb

    answers: list[tuple[str | None, str | None]] = []
    decoded: dict[int, tuple[str | None, str | None]] = {}
    with maxminddb.open_database(str(default_db())) as reader:
        for ip in ips:
            address = ipaddress.ip_address(ip)
            if address.version == 6 and address.ipv4_mapped:
                address = address.ipv4_mapped
            if any(address in net for net in _RESERVED[address.version]):
                answers.append((None, None))
                continue
            pointer, _ = reader._find_address_in_tree(bytearray(address.packed))
            if pointer not in decoded:
                decoded[pointer] = answer_of(reader._resolve_data_pointer(pointer)) \
                    if pointer else (None, None)
            answers.append(decoded[pointer])
    return answers


def check_against_maxminddb(con: duckdb.DuckDBPyConnection, ips: list[str]) -> None:
    ours = addresses.places(con, ips)
    parts = [ips[i::2] for i in range(2)]  # (2 cores: maxminddb is pure Python)
    with ProcessPoolExecutor(2) as pool:
        halves = list(pool.map(maxminddb_answers, parts))
    theirs = [None] * len(ips)
    theirs[0::2], theirs[1::2] = halves
    differ = [(ip, a, b) for ip, a, b in zip(ips, ours, theirs, strict=True) if a != b]
    assert not differ, f"{len(differ)} diferencias, p. ej. {differ[:5]}"


def test_places_agree_with_maxminddb(con: duckdb.DuckDBPyConnection) -> None:
    check_against_maxminddb(con, random_addresses(20_000, seed=11))


@pytest.mark.slow
def test_places_agree_with_maxminddb_on_a_million_addresses(
        con: duckdb.DuckDBPyConnection) -> None:
    check_against_maxminddb(con, random_addresses(1_000_000, seed=12))


# -- the text of an address -----------------------------------------------------------

TRICKY = [
    "1.2.3.4", "01.2.3.4", "1.2.3.04", "256.1.1.1", "1.2.3", "1.2.3.4.", ".1.2.3.4", "0.0.0.0",
    "255.255.255.255", "::", "::1", "1::", ":1::", "1::2::3", ":::", "1:::2", "1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7::", "::1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8::",
    "::ffff:1.2.3.4", "::ffff:01.2.3.4", "1::1.2.3.4", "1:2:3:4:5:6:1.2.3.4",
    "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3.4:5", "1.2.3.4::", "fe80::1%eth0", "[::1]", " ::1",
    "::1 ", "12345::", "0000:0000::", "00000::", "ABCD:ef01::", "g::", "::ffff:1.2.3", "", "-",
    "1:2:3:4:5:6::1.2.3.4", "1:2:3:4:5::1.2.3.4", "::1.2.3.4", "1::2:1.2.3.4", "::12.3.4.5",
    "::a1.2.3.4", "1:2", "1::2:", "1:2::3:", "::ffff:1.2.3.4.5", "١.٢.٣.٤", "::ffff:0:0",
    "1:2:3:4:5:6:7:8:", ":1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7", "1::2:3:4:5:6:7:8", "1.2.3.4\n",
]


def inet_pton(ip: str) -> tuple[int, int] | None:
    """(family, number) as the ingest reads an address: an IPv4-mapped one as IPv4."""
    try:
        if ":" in ip:
            n = int.from_bytes(socket.inet_pton(socket.AF_INET6, ip))
            return (4, n & 0xFFFFFFFF) if n >> 32 == 0xFFFF else (6, n)
        return (4, int.from_bytes(socket.inet_pton(socket.AF_INET, ip)))
    except (OSError, ValueError):
        return None


def mutated(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = "0123456789abcdefABCDEF:.:%x g"
    found = list(TRICKY)
    for _ in range(n):
        kind = rng.random()
        if kind < 0.3:
            text = str(ipaddress.IPv6Address(rng.getrandbits(128) >> rng.choice([0, 16, 64, 96])))
        elif kind < 0.5:
            text = str(ipaddress.IPv4Address(rng.getrandbits(32)))
        elif kind < 0.6:
            text = "::ffff:" + str(ipaddress.IPv4Address(rng.getrandbits(32)))
        else:
            text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 20)))
        if text and rng.random() < 0.5:
            i, c = rng.randrange(len(text)), rng.choice(alphabet)
            text = rng.choice([text[:i] + c + text[i:], text[:i] + text[i + 1:],
                               text[:i] + c + text[i + 1:]])
        found.append(text)
    return found


def test_text_is_read_as_inet_pton_reads_it() -> None:
    texts = sorted(set(mutated(50_000, seed=3)))
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT unnest($1::VARCHAR[]) AS ip", [texts])
    got = {ip: (v, int(n)) if v is not None else None for ip, v, n in con.execute(
        f"SELECT t.ip, x.v, x.n::VARCHAR FROM t "
        f"LEFT JOIN ({addresses.numbers_sql('SELECT ip FROM t')}) AS x USING (ip)").fetchall()}
    assert len(got) == len(texts)
    differ = [(t, inet_pton(t), got[t]) for t in texts if inet_pton(t) != got[t]]
    assert not differ, differ[:10]


# -- built once per mmdb ----------------------------------------------------------------

@contextmanager
def counting(calls: list[Path], scratch: Path) -> Iterator[Path]:
    with ranges(scratch) as path:
        calls.append(path)
        yield path


def test_the_database_keeps_the_ranges_of_its_mmdb(tmp_path: Path) -> None:
    db = duckdb.connect(str(tmp_path / "visitas.duckdb"))
    calls: list[Path] = []
    key = geocache.cache_name(default_db())
    addresses.prepare(db, key, lambda: counting(calls, tmp_path))
    addresses.prepare(db, key, lambda: counting(calls, tmp_path))
    assert len(calls) == 1
    db.close()
    db = duckdb.connect(str(tmp_path / "visitas.duckdb"))
    addresses.prepare(db, key, lambda: counting(calls, tmp_path))
    assert len(calls) == 1  # (kept in the file)
    addresses.prepare(db, "geo-otra.parquet", lambda: counting(calls, tmp_path))
    assert len(calls) == 2  # another mmdb: loaded again
    assert addresses.places(db, [TELMEX_CDMX]) == [("MX", "Ciudad de México")]
    assert db.execute("SELECT count(*) FROM geo_source").fetchone() == (1,)
    db.close()


def test_the_cache_is_named_by_the_mmdbs_identity(tmp_path: Path) -> None:
    copy = tmp_path / "ciudades.mmdb"
    copy.write_bytes(default_db().read_bytes())
    first = geocache.cache_name(copy)
    assert first == geocache.cache_name(copy)
    os.utime(copy, ns=(0, 1_000_000_000))
    assert geocache.cache_name(copy) != first  # replaced (a new mmdb): built again


def test_a_cache_folder_open_to_others_is_not_used(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    assert user_temp_folder("difusor") == tmp_path / f"difusor-{os.getuid()}"
    (tmp_path / f"difusor-{os.getuid()}").chmod(0o777)
    assert user_temp_folder("difusor") is None


def test_a_bad_mmdb_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "ciudades.mmdb"
    bad.write_bytes(b"esto no es una base mmdb")
    with pytest.raises(LogFormatError, match="no puedo abrir la base de geolocalización"), \
            geocache.ranges_file(bad, tmp_path):
        pass
    with pytest.raises(LogFormatError, match="no puedo abrir la base de geolocalización"):
        geocache.cache_name(tmp_path / "no-existe.mmdb")
