"""The production install (deploy/, docs/instalacion.md): the systemd unit verifies and keeps its
hardening, its command line serves as an unprivileged user, the logrotate mode loses no line,
and every command the install guide names is a real one."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import paramiko
import pytest
import typer
from conftest import alive, answers, descendants, free_port, listens

from difusor.demo.authority import make_key
from difusor.demo.election import SyntheticElection
from difusor.demo.packages import write_package
from difusor.logtail import Follower
from difusor.serve.accesslog import AccessLog

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "systemd" / "difusor.service"
LOGROTATE = ROOT / "deploy" / "logrotate" / "difusor"
GUIDE = ROOT / "docs" / "instalacion.md"
# Where docs/instalacion.md puts things; the tests swap them for their own folders.
PROD_BIN = "/opt/difusor/venv/bin/difusor"
PROD_CONFIG = "/etc/difusor/difusor.toml"
PROD_HOME = "/var/lib/difusor"
PROD_STATE = "/var/lib/difusor/state"
DIFUSOR = Path(sys.executable).parent / "difusor"  # this venv's console script
MAIN_JSON_CACHE = "no-cache, no-store, must-revalidate"
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"


def unit_settings(path: Path = UNIT) -> dict[str, dict[str, list[str]]]:
    """section → key → every value assigned, in order (systemd lets a key repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"línea fuera de sección: {raw}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def service() -> dict[str, str]:
    """[Service], one value per key (the last one, as systemd takes most keys)."""
    return {k: v[-1] for k, v in unit_settings()["Service"].items()}


# ---------------------------------------------------------------------------------------------
# The unit file


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze no está instalado (paquete Debian systemd)")
    text = UNIT.read_text()
    assert PROD_BIN in text
    # verify insists that ExecStart's program exists: this venv's, in a copy of the unit.
    unit = tmp_path / "difusor.service"
    unit.write_text(text.replace(PROD_BIN, str(DIFUSOR)))
    done = subprocess.run([analyze, "verify", "--man=no", "--generators=no", str(unit)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # An unknown key or a value systemd cannot parse is only a warning ("…, ignoring"): the
    # directive would silently do nothing, so any such line fails the test.
    for line in done.stderr.splitlines():
        assert not re.search(r"Unknown|[Ff]ailed to parse|ignoring|[Ii]nvalid", line), line


def test_the_unit_runs_difusor_run_with_its_config_as_the_difusor_user() -> None:
    s = service()
    assert shlex.split(s["ExecStart"]) == [PROD_BIN, "run", "--config", PROD_CONFIG]
    from difusor.cli.app import app

    run = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    assert "--config" in [opt for p in run.params for opt in p.opts]
    assert (s["User"], s["Group"]) == ("difusor", "difusor")
    assert s["WorkingDirectory"] == PROD_HOME and s["StateDirectory"] == "difusor"
    assert s["Restart"] == "on-failure" and float(s["RestartSec"]) > 0
    assert s["LimitNOFILE"] == "65536" and s["UMask"] == "0027"
    assert 10 < int(s["TimeoutStopSec"]) <= 90  # `difusor run` stops in < 10 s
    assert s["StandardOutput"] == "journal" and s["StandardError"] == "journal"


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
}


def test_the_unit_keeps_its_hardening() -> None:
    """Removing or weakening one of these fails here, not on election night."""
    s = service()
    for key, value in HARDENING.items():
        assert key in s, f"falta {key}= en {UNIT.name}"
        assert s[key] == value, f"{key}={s[key]!r}, se espera {value!r}"
    assert set(s["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX",
                                                         "AF_NETLINK"}
    writable = unit_settings()["Service"]["ReadWritePaths"]
    assert PROD_HOME in writable  # the state, under ProtectSystem=strict
    assert PROD_STATE.startswith(PROD_HOME + "/")
    # Off on purpose (see the unit's comment): must not come back without a real trial.
    assert "MemoryDenyWriteExecute" not in s
    # No capability by default: nft (CAP_NET_ADMIN) and ports < 1024 are opt-in drop-ins.
    assert "CAP_NET_ADMIN" not in s["AmbientCapabilities"] + s["CapabilityBoundingSet"]


# ---------------------------------------------------------------------------------------------
# The unit's command line, as the unprivileged user systemd would run it


NOBODY = "nobody"


def _blocked(path: Path, uid: int, gid: int) -> list[Path]:
    """The folders above ``path`` that ``uid`` cannot traverse, "/" first."""
    found = []
    for folder in reversed(path.parents):
        st = folder.stat()
        bit = (stat.S_IXUSR if st.st_uid == uid else stat.S_IXGRP if st.st_gid == gid
               else stat.S_IXOTH)
        if not st.st_mode & bit:
            found.append(folder)
    return found


def _hidden_python(uid: int, gid: int) -> list[tuple[Path, Path]]:
    """(hidden folder, its child to expose) for each folder that keeps ``uid`` from this
    Python (pyenv under /root, which is 0700). A private mount namespace puts a 0755 tmpfs over
    the hidden folder and bind-mounts that one child back: nothing changes on the machine."""
    import difusor

    needed = {Path(os.path.realpath(sys.executable)), Path(sys.base_prefix), Path(sys.prefix),
              DIFUSOR, Path(difusor.__file__).resolve()}
    exposes: set[tuple[Path, Path]] = set()
    for path in needed:
        hidden = _blocked(path, uid, gid)
        if not hidden:
            continue
        if len(hidden) > 1 or hidden[0] == Path("/"):
            pytest.skip(f"{NOBODY} no llega a {path} ({hidden}) y no sé abrirle el camino")
        exposes.add((hidden[0], hidden[0] / path.relative_to(hidden[0]).parts[0]))
    return sorted(exposes)


def _production_edits(text: str, home: Path) -> str:
    """What docs/instalacion.md does to the difusor.toml `difusor init` writes (its two sed)."""
    assert '\ndir = "state"\n' in text and "\n[sftp]\n" in text
    text = text.replace('\ndir = "state"\n', f'\ndir = "{home}/state"\n')
    return text.replace("\n[sftp]\n", f'\n[sftp]\nhost_key = "{home}/keys/ssh_host_ed25519_key"\n')


def test_the_guide_makes_the_same_edits_as_this_test() -> None:
    guide = GUIDE.read_text()
    assert f"sed -i 's|^dir = \"state\"$|dir = \"{PROD_STATE}\"|' {PROD_CONFIG}" in guide
    assert "chown difusor:difusor /etc/difusor/keys/integrity_ed25519" in guide
    assert (f"sed -i '/^\\[sftp\\]$/a host_key = \"{PROD_HOME}/keys/ssh_host_ed25519_key\"' "
            f"{PROD_CONFIG}") in guide


class Unprivileged:
    """The unit's ExecStart run the way systemd would: as an unprivileged user (``nobody``:
    the tests must not create accounts), NoNewPrivileges, no capabilities, UMask, LimitNOFILE,
    WorkingDirectory, the unit's Environment= and a clean environment like systemd's."""

    def __init__(self, base: Path) -> None:
        self.base = base
        user = pwd.getpwnam(NOBODY)
        self.uid, self.gid = user.pw_uid, user.pw_gid
        self.etc, self.home = base / "etc", base / "lib"
        self.web, self.sftp = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.web}/"
        self.key = base / "autoridad" / "id_ed25519"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = base / "salida.txt"
        self.children: set[int] = set()

    def install(self) -> None:
        """docs/instalacion.md's steps: init as root, the two edits, the state moved, perms."""
        self.base.chmod(0o755)
        public = make_key(self.key)
        done = subprocess.run(
            [str(DIFUSOR), "init", str(self.etc), "--web-listen", f"127.0.0.1:{self.web}",
             "--sftp-listen", f"127.0.0.1:{self.sftp}", "--authorized-key", str(public)],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        config = self.etc / "difusor.toml"
        config.write_text(_production_edits(config.read_text(), self.home))
        shutil.rmtree(self.etc / "state")  # init made it beside the config; it lives in home
        for path in (self.etc, self.etc / "keys", config, self.etc / "keys" / "authorized_keys"):
            os.chown(path, 0, self.gid)
            path.chmod(0o750 if path.is_dir() else 0o640)
        signing = self.etc / "keys" / "integrity_ed25519"  # the service signs, never changes it
        os.chown(signing, self.uid, self.gid)
        signing.chmod(0o400)
        # What StateDirectory=difusor + StateDirectoryMode=0750 make.
        self.home.mkdir(mode=0o750)
        os.chown(self.home, self.uid, self.gid)

    def start(self) -> None:
        s = service()
        argv = shlex.split(s["ExecStart"])
        assert argv[0] == PROD_BIN
        argv = [str(DIFUSOR)] + [str(self.etc / "difusor.toml") if a == PROD_CONFIG else a
                                 for a in argv[1:]]
        env = {"PATH": SYSTEMD_PATH, "HOME": str(self.home), "USER": NOBODY, "LOGNAME": NOBODY,
               "SHELL": "/usr/sbin/nologin"}
        for assignment in unit_settings()["Service"].get("Environment", []):
            env.update(a.split("=", 1) for a in shlex.split(assignment))  # type: ignore[misc]
        exposes = _hidden_python(self.uid, self.gid)
        stages = [self.base / "stage" / str(n) for n in range(len(exposes))]
        q = shlex.quote
        mounts = [f"mount --bind {q(str(child))} {q(str(st))}"  # set the children aside,
                  for (_, child), st in zip(exposes, stages, strict=True)]
        mounts += [f"mount -t tmpfs -o mode=0755 tmpfs {q(str(hidden))}"  # cover each folder,
                   for hidden in sorted({hidden for hidden, _ in exposes})]
        mounts += [f"mkdir -p {q(str(child))} && mount --move {q(str(st))} {q(str(child))}"
                   for (_, child), st in zip(exposes, stages, strict=True)]  # put them back
        for st in stages:
            st.mkdir(parents=True)
        script = "set -e\n" + "\n".join(mounts) + (
            # LimitNOFILE; a container without CAP_SYS_RESOURCE keeps its own ceiling.
            f"\nulimit -n {s['LimitNOFILE']} 2>/dev/null || ulimit -n \"$(ulimit -H -n)\"\n"
            f"umask {s['UMask']}\n"
            f"cd {shlex.quote(str(self.home))}\n"
            f"exec setpriv --reuid={self.uid} --regid={self.gid} --clear-groups "
            "--no-new-privs --inh-caps=-all --bounding-set=-all -- \"$@\"\n")
        command = ["/bin/sh", "-c", script, "sh", *argv]
        if mounts:
            unshare = shutil.which("unshare")
            if unshare is None:
                pytest.skip("falta unshare (util-linux) para que nobody llegue a este Python")
            command = [unshare, "--mount", "--propagation", "private", *command]
        if shutil.which("setpriv") is None:
            pytest.skip("falta setpriv (util-linux)")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait(lambda: answers(self.url), 20, "el servidor web responde")
        self.wait(lambda: listens(self.sftp), 10, "el SFTP escucha")
        self.children = descendants(self.proc.pid)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait(self, predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := predicate():
                return value
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"difusor run terminó ({self.proc.returncode}) antes de: "
                                     f"{what}\n{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"no ocurrió a tiempo ({timeout} s): {what}\n{self.output()}")

    def upload(self, package: Path) -> None:
        transport = paramiko.Transport(("127.0.0.1", self.sftp))
        transport.connect(username="iem",
                          pkey=paramiko.Ed25519Key.from_private_key_file(str(self.key)))
        try:
            sftp = paramiko.SFTPClient.from_transport(transport)
            assert sftp is not None
            sftp.put(str(package), package.name)
        finally:
            transport.close()

    def stop(self) -> float:
        """SIGTERM to the main process only, as KillMode=mixed does; seconds until it exited."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=float(service()["TimeoutStopSec"]))
        return time.monotonic() - started

    def cleanup(self) -> None:
        """Whatever is left (a failed test) is killed by its own id, then the folder goes."""
        if self.proc is not None:
            self.children |= descendants(self.proc.pid)
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for pid in self.children:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def unprivileged() -> Iterator[Unprivileged]:
    if os.geteuid() != 0:
        pytest.skip("hace falta root para bajar a un usuario sin privilegios")
    try:
        pwd.getpwnam(NOBODY)
    except KeyError:
        pytest.skip(f"no existe el usuario {NOBODY}")
    # Not under pytest's tmp_path: its folders are 0700 root, which nobody cannot cross.
    u = Unprivileged(Path(tempfile.mkdtemp(prefix="difusor-deploy-")))
    try:
        yield u
    finally:
        u.cleanup()


def _owner_and_mode(root: Path) -> list[tuple[str, int, int]]:
    found = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except FileNotFoundError:  # a temporary file gone meanwhile
                continue
            if not stat.S_ISLNK(st.st_mode):
                found.append((os.path.join(folder, name), st.st_uid, stat.S_IMODE(st.st_mode)))
    return found


@pytest.mark.slow
def test_the_units_command_serves_main_json_as_an_unprivileged_user(
        unprivileged: Unprivileged) -> None:
    u = unprivileged
    u.install()
    u.start()
    assert u.proc is not None
    status = Path(f"/proc/{u.proc.pid}/status").read_text()
    uids = re.search(r"^Uid:\s+(.*)$", status, re.M)
    assert uids is not None and set(uids.group(1).split()) == {str(u.uid)}, status
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status
    assert re.search(r"^CapEff:\s+0+$", status, re.M), status

    corte = next(iter(SyntheticElection().cortes(1)))
    package = write_package(corte, u.base / "paquetes")
    u.upload(package)  # by the embedded SFTP, the way the authority delivers
    main = corte.files["json/main.json"]

    def served() -> httpx.Response | None:
        r = httpx.get(u.url + "json/main.json", headers={"Accept-Encoding": "identity"}, timeout=2)
        return r if r.status_code == 200 and r.content == main else None

    r = u.wait(served, 15, "json/main.json del paquete publicado")
    assert r.headers["cache-control"] == MAIN_JSON_CACHE
    # The corte is in the public chain, signed with the key init made (readable by the
    # service only, as the guide leaves it).
    chain = httpx.get(u.url + "_difusor/cortes.json", timeout=2).json()
    assert [e["corte"] for e in chain["entradas"]] == [r.headers["x-difusor-corte"]]

    seconds = u.stop()
    assert u.proc.returncode == 0, u.output()
    assert seconds < 10, u.output()
    assert "difusor detenido" in u.output()
    # Everything the service wrote is the service user's; with UMask=0027 others cannot even
    # enter the state (the packages' originals are 0444 on purpose, behind 0750 folders), and
    # what holds visitors' IPs or keys has no bit for others at all.
    written = _owner_and_mode(u.home)
    assert any(p.endswith("/logs/access.log") for p, _, _ in written)
    assert any(p.endswith("ssh_host_ed25519_key") for p, _, _ in written)
    strangers = [(p, uid) for p, uid, _ in written if uid != u.uid]
    assert not strangers, strangers
    state = u.home / "state"
    assert not stat.S_IMODE(state.stat().st_mode) & 0o007
    writable = [(p, oct(m)) for p, _, m in written if m & 0o002]
    assert not writable, writable
    private = [(p, oct(m)) for p, _, m in written if m & 0o007 and
               re.search(r"/(logs|analytics|keys)/|ledger\.sqlite", p)]
    assert not private, private
    left = [pid for pid in u.children if alive(pid)]
    assert not left, f"procesos que siguen vivos: {left}"


# ---------------------------------------------------------------------------------------------
# logrotate: rename + create ("create" mode), followed by the writer and by logtail


def _request(log: AccessLog, n: int) -> None:
    log.record("203.0.113.7:5000", "GET", f"/json/{n}.json", "", 200, 10, None, "prueba", 0.001,
               "2024-12-08T20:30")


def _paths(data: bytes) -> list[str]:
    return [json.loads(line)["path"] for line in data.splitlines()]


def _logrotate_config(logs: Path) -> Path:
    """deploy/logrotate/difusor with its paths in ``logs``' state and root as the owner (the
    difusor and www-data accounts need not exist here)."""
    state = logs.parent
    text = LOGROTATE.read_text().replace(PROD_STATE, str(state))
    text = text.replace("difusor difusor", "root root").replace("www-data difusor", "root root")
    conf = state.parent / "logrotate.conf"
    conf.write_text(text)
    conf.chmod(0o644)
    return conf


def _rotate_like_logrotate(path: Path, how: str) -> None:
    if how == "logrotate":
        conf = _logrotate_config(path.parent)
        done = subprocess.run(["logrotate", "--force", "--state", str(conf.with_suffix(".state")),
                               str(conf)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return
    # What logrotate's "create" does, step by step (its --verbose output): "renaming
    # access.log to access.log.1", then "creating new access.log mode = 0640".
    os.rename(path, path.with_name(path.name + ".1"))
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640))


def test_the_logrotate_file_rotates_by_rename_and_create_where_the_state_is() -> None:
    text = LOGROTATE.read_text()
    rules = [line.strip() for line in text.splitlines() if not line.strip().startswith("#")]
    assert "copytruncate" not in rules and "nocreate" not in rules
    assert "create 0640 difusor difusor" in rules
    assert "delaycompress" in rules  # access.log.1 stays plain: incidents read it as is
    assert "dateext" not in rules
    assert f"{PROD_STATE}/logs/access.log" in text and f"{PROD_STATE}/sites/*/logs/access.log" in text


@pytest.mark.parametrize("how", ["logrotate", "emulated"])
def test_a_create_rotation_loses_no_line_for_the_writer_nor_the_follower(
        tmp_path: Path, how: str) -> None:
    """Two web workers (each its own ``AccessLog``, as granian's processes) write while
    ``logtail.Follower`` (the shield's reader) follows. The rotation is the real ``logrotate
    --force`` with deploy/logrotate/difusor when installed, else its emulation: rename
    access.log → access.log.1, then create an empty access.log 0640 (logrotate's "create").
    Between the rotation and their next tick the workers still write into the renamed file;
    the tick notices the new inode and reopens. Nothing is lost, on disk or for the follower."""
    if how == "logrotate" and shutil.which("logrotate") is None:
        pytest.skip("logrotate no está instalado (paquete Debian logrotate): se prueba emulado")
    logs = tmp_path / "state" / "logs"
    logs.mkdir(parents=True)
    tmp_path.chmod(0o700)  # logrotate refuses folders others can write
    path = logs / "access.log"
    workers = [AccessLog(path), AccessLog(path)]
    follower = Follower(path)
    seen = b""
    n = 0

    def batch(count: int) -> list[str]:
        nonlocal n
        sent = []
        for _ in range(count):
            worker = workers[n % 2]
            _request(worker, n)
            sent.append(f"/json/{n}.json")
            n += 1
        for worker in workers:
            worker.flush()
        return sent

    before = batch(300)
    seen += follower.read()
    _rotate_like_logrotate(path, how)
    during = batch(300)  # no tick yet: into access.log.1
    for worker in workers:
        worker.tick()  # the server's half-second tick: new inode, reopen
    after = batch(300)
    seen += follower.read()
    seen += follower.read()
    for worker in workers:
        worker.close()
    follower.close()

    # Each worker writes its own batch: lines interleave by worker, none missing nor doubled.
    assert sorted(_paths(seen)) == sorted(before + during + after)
    rotated = path.with_name("access.log.1")
    assert sorted(_paths(rotated.read_bytes())) == sorted(before + during)
    assert sorted(_paths(path.read_bytes())) == sorted(after)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_the_follower_reads_what_a_worker_writes_after_the_follower_saw_the_rotation(
        tmp_path: Path) -> None:
    """The other order of the same events: the shield reads (every 0.15 s) between logrotate's
    rename + create and the worker's next tick (every 0.5 s)."""
    path = tmp_path / "access.log"
    worker = AccessLog(path)
    follower = Follower(path)
    _request(worker, 0)
    worker.flush()
    seen = follower.read()
    _rotate_like_logrotate(path, "emulated")
    seen += follower.read()  # sees the new, empty file and moves to it
    _request(worker, 1)
    worker.flush()  # still the renamed file's descriptor
    worker.tick()
    _request(worker, 2)
    worker.flush()
    seen += follower.read()
    worker.close()
    follower.close()
    assert _paths(seen) == ["/json/0.json", "/json/1.json", "/json/2.json"]


# ---------------------------------------------------------------------------------------------
# docs/instalacion.md: every difusor command and option it names exists


SEPARATORS = {"&&", "||", ";", "|"}
STARTERS = SEPARATORS | {"--", "then", "do", "exec"}


def _guide_commands() -> list[list[str]]:
    """Each `difusor …` invocation in the guide's shell blocks (at a command's place: first word,
    after `--` of runuser, after `&&`…), as its words up to the next separator."""
    found = []
    for block in re.findall(r"```(?:sh|bash)\n(.*?)```", GUIDE.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            for i, word in enumerate(words):
                if (word == "difusor" or word.endswith("/bin/difusor")) and \
                        (i == 0 or words[i - 1] in STARTERS) and i + 1 < len(words):
                    rest = words[i + 1:]
                    cut = next((k for k, w in enumerate(rest) if w in SEPARATORS), len(rest))
                    found.append(rest[:cut])
    return found


def test_every_command_and_option_in_the_install_guide_exists() -> None:
    from difusor.cli.app import app

    group = typer.main.get_command(app)
    commands = _guide_commands()
    assert {"init", "status", "register", "sftp-config", "nginx-config", "check"} <= \
        {c[0] for c in commands}
    for name, *words in commands:
        if name == "--help":
            continue
        assert name in group.commands, f"docs/instalacion.md: no existe «difusor {name}»"  # type: ignore[attr-defined]
        command = group.commands[name]  # type: ignore[attr-defined]
        if hasattr(command, "commands") and words and words[0] in command.commands:
            command = command.commands[words[0]]
        options = {opt for p in command.params for opt in p.opts}
        for word in words:
            if word.startswith("--"):
                assert word.split("=", 1)[0] in options, f"difusor {name}: no existe {word}"


def test_the_guide_installs_the_files_this_folder_ships() -> None:
    guide = GUIDE.read_text()
    assert "deploy/systemd/difusor.service" in guide and "deploy/logrotate/difusor" in guide
    assert PROD_BIN.rsplit("/bin/", 1)[0] in guide  # the venv ExecStart names
    assert "useradd --system --home /var/lib/difusor --shell /usr/sbin/nologin difusor" in guide
