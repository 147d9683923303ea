"""Whether a verified package goes live: its corte against the clock, the live corte and the
cortes already published, and what the operator is told either way.

A wrong verdict is what an operator notices on election night: a corte dated in the far future
that blocks every real one, an old corte re-sent by the authority that is reported as "different"
(and goes live again when the operator follows the advice to force it), a reason that describes
some other package.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Site, make_site, minimal_site

from difusor.demo.packages import archive_bytes
from difusor.errors import PackageRefused
from difusor.publish.activate import live_release, read_generation

FAST = "[store]\nfsync = false\n"


@pytest.fixture
def fast_site(tmp_path: Path):
    s = make_site(tmp_path / "difusor", extra_toml=FAST)
    yield s
    s.ledger.close()


def main_json(hora: str, **more: object) -> bytes:
    return json.dumps({"ultimoCorte": {"fecha": "08/12/2024", "hora": hora}, **more}).encode()


def incremental(hora: str, **more: object) -> dict[str, bytes]:
    return {"json/main.json": main_json(hora, **more)}


def live_main(site: Site) -> bytes:
    return (site.store.site / "json/main.json").read_bytes()


# -- a corte from the future ------------------------------------------------------------------


def at(when: datetime) -> dict[str, bytes]:
    """A full site whose corte is ``when`` (ISO text with its offset, as INE 2024 may write it)."""
    main = json.dumps({"ultimoCorte": when.isoformat(timespec="minutes")}).encode()
    return {**minimal_site(), "json/main.json": main}


def test_corte_in_the_far_future_is_refused_and_real_cortes_still_go_live(fast_site: Site) -> None:
    site = fast_site
    site.publisher.publish(site.write_package("base.zip", minimal_site(hora="20:30")))
    bogus = {**minimal_site(), "json/main.json": b'{"ultimoCorte": "9999-12-31T23:59"}'}
    with pytest.raises(PackageRefused) as caught:
        site.publisher.publish(site.write_package("futuro.zip", bogus))
    assert caught.value.code == "future_corte"
    assert "reloj" in caught.value.message and "corte.max_ahead_minutes" in caught.value.message
    assert live_release(site.store) == "20241208_2030"

    # the next real corte is not refused as "older" than a corte that never went live
    out = site.publisher.publish(site.write_package("real.zip", minimal_site(hora="20:40")))
    assert out.status == "published" and out.release_id == "20241208_2040"


def test_future_corte_is_not_published_even_when_forced(fast_site: Site) -> None:
    site = fast_site
    ahead = datetime.now(UTC) + timedelta(days=2)
    with pytest.raises(PackageRefused) as caught:
        site.publisher.publish(site.write_package("futuro.zip", at(ahead)), force=True)
    assert caught.value.code == "future_corte"
    assert not site.store.current.exists()


def test_margin_ahead_of_the_clock_is_a_setting(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    default = make_site(tmp_path / "omision", extra_toml=FAST)
    # a few minutes ahead is a clock that is a little off, not a bogus corte
    out = default.publisher.publish(default.write_package("a.zip", at(now + timedelta(minutes=5))))
    assert out.status == "published"
    with pytest.raises(PackageRefused) as caught:
        default.publisher.publish(default.write_package("b.zip", at(now + timedelta(minutes=40))))
    assert caught.value.code == "future_corte"
    default.ledger.close()

    wider = make_site(tmp_path / "amplio", extra_toml=FAST + "[corte]\nmax_ahead_minutes = 60\n")
    out = wider.publisher.publish(wider.write_package("b.zip", at(now + timedelta(minutes=40))))
    assert out.status == "published"
    wider.ledger.close()


# -- a corte sent again -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["full", "incremental"])
def test_exact_resend_of_a_superseded_corte_is_recognised(fast_site: Site, kind: str) -> None:
    site = fast_site
    site.publisher.publish(site.write_package("2030.zip", minimal_site(hora="20:30")))
    if kind == "full":
        second = minimal_site(hora="20:40", extra={"json/detalle.json": b'{"actas": 2}'})
    else:
        second = incremental("20:40", actas=2)
    old = site.write_package("20241208_2040_PREP.zip", second)
    site.publisher.publish(old)
    later = {**incremental("20:50", actas=3), "json/distritos.json": b'{"d": 1}'}
    site.publisher.publish(site.write_package("2050.zip", later))
    generation, served = read_generation(site.store), live_main(site)

    for force in (False, True):  # forcing an exact re-send must not bring the old corte back
        out = site.publisher.publish(old, force=force)
        assert out.status == "unchanged"
        assert out.release_id == "20241208_2040"
        assert "ya recibido" in out.message
        assert "20241208_2050" in out.message  # which corte stays live
        assert live_release(site.store) == "20241208_2050"
        assert read_generation(site.store) == generation
        assert live_main(site) == served
    assert site.ledger.packages(limit=1)[0]["state"] == "duplicate"
    assert list(site.state.quarantine.iterdir()) == []


def test_older_corte_with_other_bytes_is_refused_as_older(fast_site: Site) -> None:
    site = fast_site
    site.publisher.publish(site.write_package("2030.zip", minimal_site(hora="20:30")))
    site.publisher.publish(site.write_package("2040.zip", incremental("20:40")))
    other = site.write_package("2030-otra.zip", incremental("20:30", corregido=True))
    with pytest.raises(PackageRefused) as caught:
        site.publisher.publish(other)
    assert caught.value.code == "older_corte"
    assert "20241208_2040" in caught.value.message
    assert live_release(site.store) == "20241208_2040"


def test_same_corte_as_live_with_other_bytes_is_still_same_corte_different(fast_site: Site) -> None:
    site = fast_site
    site.publisher.publish(site.write_package("2030.zip", minimal_site(hora="20:30")))
    with pytest.raises(PackageRefused) as caught:
        site.publisher.publish(site.write_package("b.zip", incremental("20:30", corregido=True)))
    assert caught.value.code == "same_corte_different"


# -- the reason describes the package as it is ------------------------------------------------


def test_kind_full_without_main_json_says_what_the_package_lacks(tmp_path: Path) -> None:
    site = make_site(tmp_path / "d", extra_toml=FAST + '[package]\nkind = "full"\n')
    files = {"css/estilo.css": b"body{}", "json/detalle.json": b'{"actas": 1}'}
    with pytest.raises(PackageRefused) as caught:
        site.publisher.publish(site.write_package("20241208_2030_PREP.zip", files))
    assert caught.value.code == "main_missing"
    message = caught.value.message
    assert "index.html" not in message  # the package has none
    assert "json/main.json" in message and "package.kind" in message
    site.ledger.close()


def test_auto_kind_without_main_json_names_the_marker_it_found(fast_site: Site) -> None:
    files = {"index.html": b"<p>PREP</p>", "json/detalle.json": b'{"actas": 1}'}
    with pytest.raises(PackageRefused) as caught:
        fast_site.publisher.publish(fast_site.write_package("20241208_2030_PREP.zip", files))
    assert caught.value.code == "main_missing"
    assert "trae index.html" in caught.value.message


# -- as the operator runs it ------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "difusor", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.slow
def test_cli_hostile_json_exits_2_and_a_resend_exits_0(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    assert cli("init", str(folder), "--web-listen", "127.0.0.1:18124").returncode == 0
    cfg = str(folder / "difusor.toml")

    def package(name: str, files: dict[str, bytes]) -> str:
        path = tmp_path / name
        path.write_bytes(archive_bytes(files, "zip"))
        return str(path)

    first = package("2030.zip", minimal_site(hora="20:30"))
    assert cli("publish", first, "--config", cfg).returncode == 0
    assert cli("publish", package("2040.zip", minimal_site(hora="20:40")), "--config", cfg
               ).returncode == 0
    deep = main_json("20:50").replace(b"}}", b"}, \"x\": " + b"[" * 100_000 + b"]" * 100_000 + b"}")
    refused = cli("publish", package("hondo.zip", {**minimal_site(), "json/main.json": deep}),
                  "--config", cfg)
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr and refused.stderr.count("\n") == 1
    assert "anidado" in refused.stderr

    again = cli("publish", first, "--config", cfg)
    assert again.returncode == 0, again.stderr
    assert "ya recibido" in again.stdout
    status = json.loads(cli("status", "--json", "--config", cfg).stdout)
    assert status["corte"]["id"] == "20241208_2040"
