"""The CLI where operators found rough edges: private files under any umask, an unusable state
folder, a monitor API without its token, bad arguments, Spanish help, init's safety settings."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port, minimal_site, stop_group

from difusor.demo.packages import archive_bytes

ENGLISH = ("Show this message", "Usage:", "Options", "Arguments", "Commands", "[default:",
           "Invalid value", "No such option", "No such command", "Missing", "[required]",
           "Got unexpected", "requires an argument")


def run(*args: str, env: dict[str, str] | None = None, umask: int | None = None,
        prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    def child() -> None:
        if umask is not None:
            os.umask(umask)

    return subprocess.run([*prefix, sys.executable, "-m", "difusor", *args], capture_output=True,
                          text=True, timeout=120, env=env, preexec_fn=child)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    done = run("init", str(tmp_path / "d"), "--web-listen", f"127.0.0.1:{free_port()}",
               "--sftp-listen", f"127.0.0.1:{free_port()}")
    assert done.returncode == 0, done.stderr
    return tmp_path / "d"


def one_spanish_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("difusor: ")
    return lines[0]


# -- file modes --------------------------------------------------------------------------


def test_init_under_umask_000_keeps_secrets_and_visitor_data_private(tmp_path: Path) -> None:
    done = run("init", str(tmp_path / "d"), umask=0)
    assert done.returncode == 0, done.stderr
    d = tmp_path / "d"
    assert mode(d / "keys") == 0o700
    assert mode(d / "keys" / "authorized_keys") == 0o600
    assert mode(d / "difusor.toml") == 0o600
    # They hold visitors' IPs: not readable by every account on the machine.
    assert mode(d / "state" / "ledger.sqlite") == 0o640
    assert mode(d / "state" / "logs" / "difusor.log") == 0o640


# -- an unusable state folder -------------------------------------------------------------


def package(tmp_path: Path) -> str:
    path = tmp_path / "corte.zip"
    path.write_bytes(archive_bytes(minimal_site(), "zip"))
    return str(path)


@pytest.mark.parametrize("command", ["status", "publish"])
@pytest.mark.parametrize("damage", ["missing", "a file"])
@pytest.mark.slow
def test_an_unusable_state_folder_is_exit_4_with_one_line(tmp_path: Path, folder: Path,
                                                          command: str, damage: str) -> None:
    state = folder / "state"
    shutil.rmtree(state)
    if damage == "a file":
        state.write_text("no soy una carpeta")
    args = [package(tmp_path)] if command == "publish" else []
    done = run(command, *args, "--config", str(folder / "difusor.toml"))
    assert done.returncode == 4, done.stderr
    line = one_spanish_line(done)
    assert str(state) in line and "estado" in line
    assert (state.is_file() if damage == "a file" else not state.exists())  # nothing was made


def _can_mount_read_only() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_read_only(), reason="needs root and unshare for a ro mount")
@pytest.mark.parametrize("command", ["status", "publish"])
@pytest.mark.slow
def test_a_read_only_state_folder_is_exit_4_with_one_line(tmp_path: Path, folder: Path,
                                                          command: str) -> None:
    state = folder / "state"
    args = [package(tmp_path)] if command == "publish" else []
    # A private mount namespace: the state folder is read-only for this one command (root
    # ignores file permissions, a read-only mount it cannot).
    script = (f'mount --bind -o ro "{state}" "{state}" && exec "$@"')
    done = run(command, *args, "--config", str(folder / "difusor.toml"),
               prefix=("unshare", "-m", "sh", "-c", script, "sh"))
    assert done.returncode == 4, done.stderr
    line = one_spanish_line(done)
    assert str(state) in line and "solo lectura" in line


# -- the monitor API without its token ------------------------------------------------------


@pytest.mark.slow
def test_run_refuses_a_monitor_api_without_its_token(folder: Path) -> None:
    config = folder / "difusor.toml"
    with config.open("a") as f:
        f.write(f'\n[monitor]\nlisten = "127.0.0.1:{free_port()}"\n')
    env = {k: v for k, v in os.environ.items() if k != "DIFUSOR_PROBE_TOKEN"}
    proc = subprocess.Popen([sys.executable, "-m", "difusor", "run", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        _out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        pytest.fail("difusor run kept running (restarting the probe API) without its token")
    assert proc.returncode == 3, err
    assert "DIFUSOR_PROBE_TOKEN" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


# -- arguments and help --------------------------------------------------------------------


@pytest.mark.slow
def test_gc_keep_0_is_a_usage_error_in_spanish(folder: Path) -> None:
    done = run("gc", "--keep", "0", "--config", str(folder / "difusor.toml"))
    assert done.returncode == 64, done.stderr
    line = one_spanish_line(done)
    assert "--keep" in line and "al menos 1" in line and "inexistente" not in line


@pytest.mark.parametrize("args", [
    ("gc", "--keep", "x"), ("gc", "--bogus"), ("publish",), ("rollback", "a", "b"),
    ("uptime", "--month", "2024-12", "--vantage"), ("nope",),
])
@pytest.mark.slow
def test_usage_errors_are_spanish(args: tuple[str, ...]) -> None:
    done = run(*args)
    assert done.returncode == 64, done.stderr
    line = one_spanish_line(done)
    assert line.startswith("difusor: uso incorrecto: ")
    for english in ENGLISH:
        assert english not in line, line


@pytest.mark.parametrize("args", [
    (), ("gc",), ("init",), ("publish",), ("uptime",), ("analytics",), ("shield",),
    ("simulate", "packages"),
])
@pytest.mark.slow
def test_help_is_spanish_throughout(args: tuple[str, ...]) -> None:
    done = run(*args, "--help")
    assert done.returncode == 0, done.stderr
    for english in ENGLISH:
        assert english not in done.stdout, (english, done.stdout)
    assert "Muestra esta ayuda y sale." in done.stdout
    assert "Uso:" in done.stdout and "Opciones" in done.stdout


# -- init's safety settings, and status telling when they are missing ------------------------


@pytest.mark.slow
def test_init_writes_allow_from_and_operation_end_with_comments(tmp_path: Path) -> None:
    done = run("init", str(tmp_path / "d"))
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "d" / "difusor.toml").read_text()
    sftp = text.split("[sftp]", 1)[1].split("\n[", 1)[0]
    assert "allow_from = []" in sftp and "# " in sftp.split("allow_from", 1)[0]
    before, operation = text.split("[operation]", 1)
    assert 'end = ""' in operation and "# Fin de la operación" in before.rsplit("\n\n", 1)[1]
    given = run("init", str(tmp_path / "e"), "--allow-from", "200.23.8.0/24",
                "--allow-from", "2001:db8::/32", "--operation-end", "09/12/2024 20:00")
    assert given.returncode == 0, given.stderr
    text = (tmp_path / "e" / "difusor.toml").read_text()
    assert 'allow_from = ["200.23.8.0/24", "2001:db8::/32"]' in text
    assert 'end = "2024-12-09T20:00:00-06:00"' in text
    bad = run("init", str(tmp_path / "f"), "--allow-from", "no-es-red")
    assert bad.returncode == 64 and "no-es-red" in one_spanish_line(bad)


@pytest.mark.slow
def test_status_says_when_allow_from_is_empty(tmp_path: Path, folder: Path) -> None:
    config = str(folder / "difusor.toml")
    human = run("status", "--config", config)
    assert human.returncode == 0, human.stderr
    assert "allow_from" in human.stdout and "cualquier" in human.stdout
    doc = run("status", "--json", "--config", config)
    assert "allow_from" in doc.stdout
    given = run("init", str(tmp_path / "e"), "--allow-from", "200.23.8.0/24")
    assert given.returncode == 0
    quiet = run("status", "--config", str(tmp_path / "e" / "difusor.toml"))
    assert "allow_from" not in quiet.stdout
