"""Every ``difusor`` command shown in the README runs as written (paths moved to a temp folder)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    lines = [line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("difusor ") or _PIPED.match(line)]


# ``echo "TEXT" | difusor …``: the command reads TEXT on its standard input.
_PIPED = re.compile(r'^echo "([^"]*)" \| (difusor .*)$')


def test_readme_shows_both_make_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    for target in ("demo:", "test:", "install:"):
        assert re.search(rf"^{target}", (ROOT / "Makefile").read_text(), flags=re.M)


# Commands that only read the state (SQLite in WAL mode lets them beside a writer): started
# and left to run beside the next ones, their exit status checked at the end.
BESIDE = ("status", "sftp-config", "nginx-config", "register", "phase", "uptime", "incidents")


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path: Path) -> None:
    commands = readme_commands()
    assert len(commands) >= 8
    port, sftp_port = free_port(), free_port()
    running: list[tuple[str, subprocess.Popen[str]]] = []
    for command in commands:
        command = (command.replace("/tmp/", f"{tmp_path}/")
                   .replace("127.0.0.1:8080", f"127.0.0.1:{port}")
                   .replace("127.0.0.1:2222", f"127.0.0.1:{sftp_port}"))
        piped = _PIPED.match(command)
        given, command = (piped[1] + "\n", piped[2]) if piped else (None, command)
        args = [sys.executable, "-m", "difusor", *command.split()[1:]]
        if command.startswith(("difusor serve", "difusor run")):
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            try:
                deadline = time.monotonic() + 20
                while True:
                    try:
                        r = httpx.get(f"http://127.0.0.1:{port}/json/main.json", timeout=1)
                        break
                    except httpx.TransportError:
                        assert time.monotonic() < deadline, f"{command}: no respondió"
                        time.sleep(0.1)
                assert r.status_code == 200
            finally:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            assert proc.returncode in (0, -2, 130), f"{command}: terminó con {proc.returncode}"
            continue
        if command.split()[1] in BESIDE:
            running.append((command, subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                                      stderr=subprocess.PIPE, text=True)))
            continue
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, input=given)
        assert done.returncode == 0, f"{command}: {done.stderr}"
    for command, proc in running:
        _out, errors = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{command}: {errors}"
