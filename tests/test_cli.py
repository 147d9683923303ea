"""The ``difusor`` command as an operator runs it: exit codes, one-line Spanish errors, JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from conftest import minimal_site

from difusor.demo.packages import archive_bytes

COMMANDS = ["init", "serve", "publish", "status", "rollback", "gc", "demo"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "difusor", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    r = run("init", str(tmp_path / "d"), "--web-listen", "127.0.0.1:18123")
    assert r.returncode == 0, r.stderr
    return tmp_path / "d"


def package(tmp_path: Path, name: str, files: dict[str, bytes]) -> str:
    path = tmp_path / name
    path.write_bytes(archive_bytes(files, "zip"))
    return str(path)


@pytest.mark.slow
def test_init_writes_config_keys_and_state(tmp_path: Path, folder: Path) -> None:
    text = (folder / "difusor.toml").read_text()
    assert 'listen = "127.0.0.1:18123"' in text
    assert (folder / "keys" / "authorized_keys").exists()
    assert (folder / "state" / "ledger.sqlite").exists()
    again = run("init", str(folder))
    assert again.returncode == 1 and "ya existe" in again.stderr
    key = tmp_path / "iem.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample iem@autoridad\n")
    forced = run("init", str(folder), "--force", "--authorized-key", str(key))
    assert forced.returncode == 0
    assert (folder / "keys" / "authorized_keys").read_text() == key.read_text()


@pytest.mark.slow
def test_status_states_every_time_in_the_site_zone(tmp_path: Path, folder: Path) -> None:
    """``publicado`` and ``activado`` were UTC beside a local ``fecha_hora``: every time is now
    in ``[site] timezone``, with its offset, and ``zona`` names that zone (JSON and text)."""
    import re
    from datetime import timedelta

    cfg = str(folder / "difusor.toml")
    for name, hora in (("a.zip", "20:30"), ("b.zip", "20:40")):
        assert run("publish", package(tmp_path, name, minimal_site(hora=hora)),
                   "--config", cfg).returncode == 0
    for zone, hours, abbr in (("America/Mexico_City", -6, "CST"), ("America/Tijuana", -8, "PST")):
        toml = folder / "difusor.toml"
        toml.write_text(re.sub(r'timezone = "[^"]*"', f'timezone = "{zone}"', toml.read_text()))
        doc = json.loads(run("status", "--json", "--config", cfg).stdout)
        assert doc["zona"] == zone
        times = [doc["corte"]["fecha_hora"], doc["corte"]["publicado"]]
        times += [row[k] for row in doc["historial"] for k in ("fecha_hora", "publicado",
                                                                 "activado")]
        for iso in times:
            assert datetime.fromisoformat(iso).utcoffset() == timedelta(hours=hours), iso
        corte = datetime.fromisoformat(doc["corte"]["fecha_hora"])
        assert corte == datetime.fromisoformat("2024-12-08T20:40:00-06:00")  # same instant
        human = run("status", "--config", cfg).stdout
        named = re.findall(r"\b(UTC|[CMP][SD]T)\b", human)  # table cells wrap: zones alone
        assert len(named) == 6 and set(named) == {abbr}, human


@pytest.mark.slow
def test_publish_status_rollback_gc_round_trip(tmp_path: Path, folder: Path) -> None:
    cfg = str(folder / "difusor.toml")
    first = run("publish", package(tmp_path, "a.zip", minimal_site(hora="20:30")), "--config", cfg)
    assert first.returncode == 0, first.stderr
    assert "corte 20241208_2030 en línea" in first.stdout
    second = run("publish", package(tmp_path, "b.zip", minimal_site(hora="20:40")), "--config", cfg)
    assert second.returncode == 0
    doc = json.loads(run("status", "--json", "--config", cfg).stdout)
    assert doc["corte"]["id"] == "20241208_2040"
    assert doc["corte"]["fecha_hora"] == "2024-12-08T20:40:00-06:00"
    assert set(doc["corte"]) >= {"id", "fecha_hora", "publicado", "paquete_sha256"}
    assert [h["id"] for h in doc["historial"]] == ["20241208_2040", "20241208_2030"]
    human = run("status", "--config", cfg).stdout
    assert "Corte en línea: 20241208_2040" in human and "08/12/2024 20:40:00" in human
    back = run("rollback", "--config", cfg)
    assert back.returncode == 0 and "20241208_2030" in back.stdout
    assert json.loads(run("status", "--json", "--config", cfg).stdout)["corte"]["id"] == "20241208_2030"
    missing = run("rollback", "19990101_0000", "--config", cfg)
    assert missing.returncode == 6 and "no existe" in missing.stderr
    gc = run("gc", "--keep", "1", "--config", cfg)
    assert gc.returncode == 0 and "Depurados 0 cortes" in gc.stdout  # live + newest are kept


@pytest.mark.slow
def test_refused_package_exits_2_with_one_spanish_line(tmp_path: Path, folder: Path) -> None:
    cfg = str(folder / "difusor.toml")
    bad = run("publish", package(tmp_path, "mal.zip", {"../../etc/passwd": b"x"}), "--config", cfg)
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("difusor: paquete rechazado:")
    assert "sube de carpeta" in lines[0] and "quarantine" in lines[0]
    assert "Traceback" not in bad.stderr
    quarantined = list((folder / "state" / "quarantine").glob("*mal.zip*"))
    assert len(quarantined) == 2  # the original and its reason


@pytest.mark.slow
def test_config_and_usage_errors(tmp_path: Path) -> None:
    missing = run("status", "--config", str(tmp_path / "no.toml"))
    assert missing.returncode == 3 and "no encuentro" in missing.stderr
    usage = run("publish")
    assert usage.returncode == 64 and "uso incorrecto" in usage.stderr
    no_file = run("publish", str(tmp_path / "nada.zip"), "--config", str(tmp_path / "no.toml"))
    assert no_file.returncode == 3


@pytest.mark.slow
def test_every_command_takes_config() -> None:
    for command in ["serve", "publish", "status", "rollback", "gc"]:
        assert "--config" in run(command, "--help").stdout, command
    listed = run("--help").stdout
    for command in COMMANDS:
        assert command in listed


@pytest.mark.slow
def test_simulate_packages_writes_a_publishable_series(tmp_path: Path, folder: Path) -> None:
    out = run("simulate", "packages", str(tmp_path / "serie"), "--count", "3")
    assert out.returncode == 0
    packages = sorted((tmp_path / "serie").glob("*.zip"))
    assert len(packages) == 3 and all(Path(str(p) + ".sha256").exists() for p in packages)
    for p in packages:
        assert run("publish", str(p), "--config", str(folder / "difusor.toml")).returncode == 0


def _help(tree: object, args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    from difusor.cli import spanish

    spanish.command(tree)([*args, "--help"], standalone_mode=False,  # type: ignore[arg-type]
                          prog_name="difusor")
    return capsys.readouterr().out


def test_a_command_line_builds_only_its_branch_and_says_the_same(
        capsys: pytest.CaptureFixture[str]) -> None:
    """``main`` builds only the branch a command line names: every command's and group's help
    is then word for word the whole tree's, and ``analytics ingest`` loads no other family."""
    from difusor.cli import app

    for name in app.COMMANDS:
        assert _help(app.build(name), [name], capsys) == _help(app.app, [name], capsys), name
    for name in app.GROUPS:
        assert _help(app.build(name), [name], capsys) == _help(app.app, [name], capsys), name
    assert _help(app.build("console"), ["console", "user"], capsys) == \
        _help(app.app, ["console", "user"], capsys)
    code = ("import sys; sys.argv = ['difusor', 'analytics', 'ingest', '--help']\n"
            "from difusor.cli import app\ntry: app.main()\nexcept SystemExit: pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('difusor.cli.')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    loaded = r.stdout.strip().splitlines()[-1]
    assert "difusor.cli.analytics" in loaded and "difusor.cli.shield" not in loaded, r.stderr
    assert "difusor.cli.console" not in loaded
