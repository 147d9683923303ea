"""What both benchmarks need around the measurement: child processes, nginx, a difusor site.

Every process a benchmark starts is a ``Child``: its own process group (so its workers stop with
it), ``SIGTERM`` when the benchmark dies however it dies (``PR_SET_PDEATHSIG``), and a stop that
escalates to ``SIGKILL``. ``guard`` turns ``SIGTERM`` and an overall time limit into exceptions,
so the ``finally`` blocks that stop the children always run.
"""

from __future__ import annotations

import ctypes
import grp
import os
import platform
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from difusor import config as config_mod
from difusor.demo.packages import archive_bytes
from difusor.ledger import Ledger
from difusor.paths import StateLayout
from difusor.ports import unused_port as free_port  # (below the clients' port range)
from difusor.publish.publisher import Publisher
from difusor.store.layout import StoreLayout

BENCH = Path(__file__).resolve().parent
# DIFUSOR_BENCH_OUT lets the suite run the --quick modes without touching bench/out/.
OUT = Path(os.environ.get("DIFUSOR_BENCH_OUT", Path(__file__).resolve().parent / "out"))
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MAIN_CACHE_CONTROL = config_mod.MAIN_JSON_CACHE_CONTROL
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class BenchError(RuntimeError):
    """A benchmark could not measure what it promised (a server did not answer as required)."""


# -- bounding the run ---------------------------------------------------------------------------

def guard(max_seconds: int) -> None:
    """SIGTERM and an overall deadline raise in the main thread, so cleanup still happens."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGALRM:
            raise TimeoutError(f"benchmark exceeded its {max_seconds} s limit")
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(max_seconds)


def wait_until(check: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(step)
    raise BenchError(f"{what}: no answer within {timeout:.0f} s")


# -- child processes ------------------------------------------------------------------------------

def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the benchmark is killed (even SIGKILL), the
    # kernel sends this child SIGTERM, so no server outlives the run.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """A process we started: its own process group, stopped with it (see the module docstring)."""

    def __init__(self, name: str, argv: list[str], log: Path, **popen: Any) -> None:
        self.name = name
        self.log = log
        self._log_file = log.open("ab")
        self.proc = subprocess.Popen(
            argv, stdout=popen.pop("stdout", self._log_file), stderr=self._log_file,
            start_new_session=True, preexec_fn=_die_with_parent, **popen,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        try:
            if self.alive():
                os.killpg(self.proc.pid, sig)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=timeout)
            # The leader is gone; a worker it left behind would still be in its group.
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream:
                    stream.close()
            self._log_file.close()

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def answers(url: str) -> bool:
    try:  # plain HTTP on loopback: verify=False skips building a TLS context (~40 ms a call)
        httpx.get(url, timeout=1, verify=False)
        return True
    except httpx.TransportError:
        return False


def wait_serving(child: Child, url: str, timeout: float = 30.0) -> None:
    """Return once ``url`` answers; a child that never does is stopped before the error."""

    def ready() -> bool:
        if not child.alive():
            raise BenchError(f"{child.name} exited while starting:\n{child.tail()}")
        return answers(url)

    try:
        wait_until(ready, timeout, child.name)
    except BaseException:
        child.stop()
        raise


def wait_ssh(child: Child, port: int, timeout: float = 30.0) -> None:
    """Return once ``port`` sends an SSH banner."""

    def ready() -> bool:
        if not child.alive():
            raise BenchError(f"{child.name} exited while starting:\n{child.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                return s.recv(64).startswith(b"SSH-2.0-")
        except OSError:
            return False

    try:
        wait_until(ready, timeout, child.name)
    except BaseException:
        child.stop()
        raise


# -- nginx ------------------------------------------------------------------------------------

_TYPES = {"html": "text/html", "json": "application/json", "css": "text/css",
          "js": "text/javascript", "svg": "image/svg+xml", "zip": "application/zip"}
# The access log format mirrors difusor's own JSON lines, so both servers do comparable work.
_LOG_FORMAT = (
    "'{\"time\":\"$time_iso8601\",\"ip\":\"$remote_addr\",\"method\":\"$request_method\","
    "\"path\":\"$uri\",\"query\":\"$args\",\"status\":$status,\"bytes\":$body_bytes_sent,"
    "\"referer\":\"$http_referer\",\"user_agent\":\"$http_user_agent\","
    "\"duration\":$request_time}'"
)


def nginx_conf(prefix: Path, port: int, root: Path, *, access_log: bool) -> str:
    """One worker, every path inside ``prefix``; main.json with the convocatoria's header."""
    user = ""
    if os.geteuid() == 0:  # the master is root: workers drop to nobody (needs a real group name)
        nobody = pwd.getpwnam("nobody")
        user = f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};\n"
    temps = "\n".join(f"    {kind}_temp_path {prefix}/tmp/{kind};"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    types = " ".join(f"{mime} {ext};" for ext, mime in _TYPES.items())
    log = (f"    log_format difusor escape=json {_LOG_FORMAT};\n"
           f"    access_log {prefix}/access.log difusor buffer=64k;" if access_log
           else "    access_log off;")
    return f"""{user}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    types {{ {types} }}
    default_type application/octet-stream;
{temps}
    sendfile on;
    tcp_nopush on;
    open_file_cache off;
{log}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
        location = /json/main.json {{
            add_header Cache-Control "{MAIN_CACHE_CONTROL}" always;
        }}
    }}
}}
"""


def start_nginx(prefix: Path, port: int, root: Path, *, access_log: bool) -> Child:
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_conf(prefix, port, root, access_log=access_log))
    argv = [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    check = subprocess.run([*argv, "-t", "-q"], capture_output=True, text=True, timeout=20)
    if check.returncode != 0:
        raise BenchError(f"nginx -t refused the configuration:\n{check.stderr}")
    child = Child("nginx", argv, prefix / "nginx.out")
    wait_serving(child, f"http://127.0.0.1:{port}/")
    return child


def open_for_nginx(*folders: Path) -> None:
    """nginx workers run as nobody when we are root: let them into our private temp folders."""
    if os.geteuid() == 0:
        for folder in folders:
            folder.chmod(0o755)


# -- a difusor site and its server ------------------------------------------------------------

@dataclass
class DifusorSite:
    root: Path
    config_path: Path
    cfg: config_mod.Config
    ledger: Ledger
    publisher: Publisher
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def store(self) -> StoreLayout:
        return StoreLayout(StateLayout(self.cfg.state_dir).store)

    @property
    def access_log(self) -> Path:
        return StateLayout(self.cfg.state_dir).access_log

    def close(self) -> None:
        self.ledger.close()


# The latency benches poll main.json every ~2 ms from 127.0.0.1: a slow publication makes that
# loopback address look like one client over the shield's 20 requests/s, and its first ban is
# 120 s of the new main.json unseen (seen in receive_latency --quick). They measure delivery,
# not the shield: loopback is allowed there, as an operator allows its own monitors.
POLLER_ALLOWED = '\n[shield]\nallow = ["127.0.0.0/8"]\n'


def make_site(root: Path, extra_toml: str = "") -> DifusorSite:
    """What ``difusor init`` makes, with its defaults (2 workers, access log on, fsync on)."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    (root / "keys").mkdir(exist_ok=True)
    (root / "keys" / "authorized_keys").write_text("")
    cfg_path = root / "difusor.toml"
    cfg_path.write_text(config_mod.render_default(web_listen=f"127.0.0.1:{port}") + extra_toml)
    cfg = config_mod.load(cfg_path)
    ledger = Ledger(StateLayout(cfg.state_dir).ledger)
    return DifusorSite(root, cfg_path, cfg, ledger, Publisher(cfg, ledger), port)


def publish_files(site: DifusorSite, name: str, files: dict[str, bytes]) -> None:
    path = site.root / "paquetes" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(archive_bytes(files, "zip"))
    site.publisher.publish(path)


def start_difusor(site: DifusorSite) -> Child:
    """``difusor serve`` exactly as operators run it."""
    argv = [sys.executable, "-m", "difusor", "serve", "--config", str(site.config_path)]
    child = Child("difusor serve", argv, site.root / "serve.out")
    wait_serving(child, site.url + "/_difusor/health")
    return child


# -- the record ---------------------------------------------------------------------------------

def machine_load() -> dict[str, float]:
    """How busy the machine is (other work skews every number here: record it with them)."""
    one, five, _ = os.getloadavg()
    load = {"loadavg_1m": one, "loadavg_5m": five}
    try:  # PSI: share of the last 10 s in which some runnable task waited for a CPU
        some = Path("/proc/pressure/cpu").read_text().split("\n", 1)[0]
        load["cpu_pressure_10s"] = float(some.split("avg10=", 1)[1].split()[0])
    except (OSError, IndexError, ValueError):
        pass
    return load


def print_load(when: str, load: dict[str, float]) -> None:
    # CPU pressure says "right now"; the load average trails by a minute, so it is the fallback.
    busy = (load["cpu_pressure_10s"] > 10 if "cpu_pressure_10s" in load
            else load["loadavg_1m"] > (os.cpu_count() or 1) / 2)
    note = "  (busy machine: expect noisy numbers)" if busy else ""
    print(f"machine load {when}: " + ", ".join(f"{k} {v:.2f}" for k, v in load.items()) + note,
          flush=True)


def versions() -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        text = (done.stdout + done.stderr).strip()  # nginx -v prints on stderr
        return text.splitlines()[0] if text else "?"

    return {
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpus": str(os.cpu_count()),
        "nginx": first_line([NGINX, "-v"]),
        "wrk": first_line(["wrk", "-v"]),
        "rsync": first_line(["rsync", "--version"]),
    }


# -- nginx with the generated configuration, and what a process group cost ---------------------

def start_generated_nginx(site: DifusorSite, prefix: Path, port: int, **nginx: Any) -> Child:
    """nginx with the configuration ``difusor nginx-config`` generates for ``site``, in its own
    ``prefix``; ``nginx`` overrides fields of the site's ``[nginx]`` section (e.g. a higher
    ``limit_req_rate``: a benchmark from one loopback address is one client)."""
    from difusor.serve.nginxconf import NginxConfig, standalone

    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    cfg = site.cfg.model_copy(update={"nginx": site.cfg.nginx.model_copy(
        update={"listen": port, "access_log": str(prefix / "access.log"), **nginx})})
    include = prefix / "difusor-nginx.conf"
    include.write_text(NginxConfig(cfg).render())
    user = None
    if os.geteuid() == 0:  # the master is root: workers drop to nobody (with its real group)
        nobody = pwd.getpwnam("nobody")
        user = f"nobody {grp.getgrgid(nobody.pw_gid).gr_name}"
    conf = prefix / "nginx.conf"
    conf.write_text(standalone(include, prefix, user=user))
    argv = [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log"),
            "-g", "daemon off;"]
    check = subprocess.run([*argv, "-t", "-q"], capture_output=True, text=True, timeout=20)
    if check.returncode != 0:
        raise BenchError(f"nginx -t refused the generated configuration:\n{check.stderr}")
    child = Child("nginx", argv, prefix / "nginx.out")
    wait_serving(child, f"http://127.0.0.1:{port}/")
    return child


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def processes() -> dict[int, tuple[int, int, float, str]]:
    """pid → (ppid, pgrp, user + system CPU seconds, command line) of every live process."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace").strip()
        except OSError:  # gone meanwhile
            continue
        f = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
        out[int(entry.name)] = (int(f[1]), int(f[2]), (int(f[11]) + int(f[12])) / _CLOCK_TICKS,
                                cmd)
    return out


def process_tree(procs: dict[int, tuple[int, int, float, str]], top: int) -> list[int]:
    """``top`` and every process under it (``procs`` from ``processes``)."""
    found, todo = [], [top]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += [p for p, (ppid, *_rest) in procs.items() if ppid == pid]
    return found


def group_cpu_seconds(child: Child) -> float:
    """User + system CPU seconds of the live processes in ``child``'s process group (a server
    and its workers), from /proc: read it before and after some work to charge the server."""
    return sum(cpu for _ppid, pgrp, cpu, _cmd in processes().values() if pgrp == child.proc.pid)


GNU_TIME = "/usr/bin/time"


def run_to_end(argv: list[str], log: Path, stdout: Path | None = None,
               sample: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Runs a command to its end in a session of its own, its stderr appended to ``log``: wall
    seconds and its peak resident memory; ``sample(pid)`` is called every 0.1 s meanwhile.
    The peak is read by GNU time, a small process that forks the command: a child forked from
    the benchmark itself would count the benchmark's own resident pages (the kernel keeps the
    largest size a process had, the forked copy's before ``exec`` included: hundreds of MB once
    a log is generated). Raises with the tail of ``log`` when the command fails."""
    with tempfile.NamedTemporaryFile(prefix="difusor-time-") as report, log.open("ab") as err, \
            (stdout.open("wb") if stdout else open(os.devnull, "wb")) as out:
        gnu_time = os.access(GNU_TIME, os.X_OK)
        measured = [GNU_TIME, "-f", "%M", "-o", report.name, *argv] if gnu_time else argv
        began = time.perf_counter()
        proc = subprocess.Popen(measured, stdout=out, stderr=err, start_new_session=True)
        stop = threading.Event()

        def sampling(sample: Callable[[int], None]) -> None:
            while not stop.wait(0.1):
                sample(proc.pid)

        sampler = threading.Thread(target=sampling, args=(sample,), daemon=True) if sample \
            else None
        if sampler:
            sampler.start()
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - began
        stop.set()
        if sampler:
            sampler.join()
        words = Path(report.name).read_text().split()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{argv[0]} … terminó con {code}:\n{log.read_text()[-2000:]}")
    peak_kb = int(words[-1]) if gnu_time and words else usage.ru_maxrss
    return {"seconds": seconds, "peak_rss_mb": peak_kb / 1024}
