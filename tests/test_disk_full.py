"""A full disk: the package is refused no_space (no quarantine, nothing live changes), `run`
publishes it by itself once there is room, and the monitor opens a 'disco casi lleno' incident.
The state folder sits on a real tmpfs of a few MB, mounted in a mount namespace of its own."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from conftest import Site, answers, free_port, make_site, minimal_site

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"),
    reason="hace falta root con unshare y nsenter para montar un tmpfs pequeño")


def package(path: Path, hora: str, megabytes: float) -> Path:
    files = minimal_site(hora=hora, extra={"datos/base.bin": os.urandom(int(megabytes * 2**20))})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # random bytes: nothing to compress
        for name, data in files.items():
            zf.writestr(name, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


def difusor(*args: str) -> str:
    return f"{sys.executable} -m difusor {' '.join(args)}"


@pytest.mark.slow
def test_publish_on_a_full_disk_is_refused_no_space_and_changes_nothing(tmp_path: Path) -> None:
    site: Site = make_site(tmp_path / "d")
    site.ledger.close()
    state, config = site.cfg.state_dir, site.config_path
    small = package(tmp_path / "pk" / "20241208_2030_PREP.zip", "20:30", 0.1)
    big = package(tmp_path / "pk" / "20241208_2040_PREP.zip", "20:40", 2.5)  # the copy fits, not twice
    script = " && ".join([
        f"mount -t tmpfs -o size=4m tmpfs {state}",
        difusor("publish", str(small), "--config", str(config)),
        "{ " + difusor("publish", str(big), "--config", str(config)) + "; echo \"rc=$?\"; }",
        difusor("status", "--json", "--config", str(config)),
        f"ls -A {state}/quarantine {state}/incoming",
    ])
    out = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "rc=2" in out.stdout, out.stdout + out.stderr
    assert "no hay espacio en disco" in out.stderr and "Traceback" not in out.stderr
    status = json.loads(out.stdout[out.stdout.index("{"):out.stdout.rindex("}") + 1])
    assert status["corte"]["id"] == "20241208_2030"  # the live corte is untouched
    listing = out.stdout[out.stdout.rindex("}") + 1:]
    assert ".zip" not in listing  # nothing quarantined, no copy left taking room


@pytest.mark.slow
def test_run_publishes_the_package_once_there_is_room_and_the_disk_is_watched(tmp_path: Path) -> None:
    web = free_port()
    site = make_site(tmp_path / "d", port=web)
    site.ledger.close()
    state, config = site.cfg.state_dir, site.config_path
    text = config.read_text().replace("[sftp]\n", "[sftp]\nenabled = false\n", 1)
    config.write_text(text + "\n[monitor]\ninterval = 1\n")  # incidents within a second
    first = package(tmp_path / "pk" / "20241208_2030_PREP.zip", "20:30", 0.1)
    big = package(tmp_path / "pk" / "20241208_2040_PREP.zip", "20:40", 3.5)
    proc = subprocess.Popen(
        ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=6m tmpfs {state} && exec "
         + difusor("run", "--config", str(config))],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{web}"

    def inside(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nsenter", "-t", str(proc.pid), "-m", "sh", "-c", command],
                              capture_output=True, text=True, timeout=60)

    def hand_over(pkg: Path) -> None:  # as a receiver does: onto the state's disk, then the inbox
        done = inside(f"cp {pkg} {state}/{pkg.name} && {sys.executable} -c \"from pathlib import Path; "
                      f"from difusor.receive.inbox import deliver; deliver(Path('{state}/{pkg.name}'), "
                      f"Path('{state}/inbox'))\"")
        assert done.returncode == 0, done.stderr

    def corte() -> str | None:
        try:
            body = httpx.get(url + "/_difusor/status.json", timeout=2).json()
        except (httpx.TransportError, ValueError):
            return None
        return (body.get("corte") or {}).get("id")

    def wait(predicate, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not predicate():
            assert time.monotonic() < deadline, f"no ocurrió a tiempo: {what}"
            time.sleep(0.1)

    try:
        wait(lambda: corte() is None and answers(url), 30, "difusor run responde")
        hand_over(first)
        wait(lambda: corte() == "20241208_2030", 30, "el primer corte en línea")
        hand_over(big)
        wait(lambda: _refused_no_space(inside, config), 30, "el rechazo no_space")
        assert corte() == "20241208_2030"
        assert inside(f"ls {state}/inbox").stdout.strip(), "el paquete debe esperar en el buzón"
        grown = inside(f"mount -o remount,size=64m {state}")
        assert grown.returncode == 0, grown.stderr
        wait(lambda: corte() == "20241208_2040", 30, "publicado solo, en cuanto hubo espacio")

        def kinds() -> set[str]:
            listed = inside(difusor("incidents", "--json", "--config", str(config))).stdout
            return {i["tipo"] for i in json.loads(listed)["incidentes"]} if listed else set()

        wait(lambda: {"disk", "refused"} <= kinds(), 20, "los incidentes de disco y de rechazo")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert "Traceback" not in out, out


def _refused_no_space(inside, config: Path) -> bool:
    found = inside(f"{sys.executable} -c \"from difusor.ledger import Ledger; from difusor import config; "
                   f"c = config.load(__import__('pathlib').Path('{config}')); "
                   f"l = Ledger(c.state_dir / 'ledger.sqlite'); "
                   f"print([e['detail'] for e in l.events('refused')])\"")
    return "no_space" in found.stdout
