"""Every service of one difusor, in the foreground, each restarted if it dies.

Parts run as threads of this process (receivers, the inbox consumer, the janitor) except the web
server, a child process of its own (its workers are processes). A part that raises or exits is
logged, written to the ledger and started again with a growing pause; SIGINT/SIGTERM stop them
all within 10 s. Anything cut short is safe: publishing is crash-safe and the inbox keeps
whatever was not finished.

With ``[sites]``: receivers and an inbox consumer per feed (the consumer picks the site by the
operation's phase), and a monitor, shield and analytics per site, each on its own state and
ledger; one web server answers for every site by Host.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from difusor.config import Config
from difusor.config.sites import feed_config
from difusor.errors import BusyError
from difusor.ledger import Ledger
from difusor.paths import StateLayout, private_file
from difusor.run.consumer import InboxConsumer
from difusor.serve.lifeline import PARENT_ENV
from difusor.sites.catalog import default_site, feeds, site_configs

STOP_BUDGET = 9.0  # seconds: the contract promises a clean stop within 10
_BACKOFF_MAX = 30.0
_HEALTHY_AFTER = 60.0  # a part that ran this long starts its next backoff from scratch

log = logging.getLogger("difusor")


@dataclass
class Part:
    name: str  # what the operator reads
    target: Callable[[threading.Event], None]
    thread: threading.Thread | None = None
    restarts: int = 0
    backoff: float = field(default=1.0)


class Supervisor:
    def __init__(self, cfg: Config, config_path: Path) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.state = StateLayout(cfg.state_dir)
        self.state.create()
        self._lock = _hold_run_lock(self.state.root / "run.lock")
        self.ledger = Ledger(self.state.ledger)
        self.stop = threading.Event()
        self.consumers = {f: InboxConsumer(cfg, self.ledger, feed=f, log=log.info)
                          for f in feeds(cfg)}
        self.consumer = self.consumers[""]
        # Each site's view and ledger ("" = the file itself, with the difusor's ledger).
        self.sites = site_configs(cfg)
        self.site_ledgers = {name: self.ledger if not name else
                             Ledger(StateLayout(site.state_dir).create().ledger)
                             for name, site in self.sites.items()}
        self.parts = self._parts()
        self._web: subprocess.Popen[bytes] | None = None

    # -- what runs ----------------------------------------------------------------------

    def _parts(self) -> list[Part]:
        parts = [Part("servidor web", self._run_web)]
        for feed, consumer in self.consumers.items():
            cfg, tag = feed_config(self.cfg, feed), f" ({feed})" if feed else ""
            parts += [Part("publicador" + tag, consumer.run),
                      Part("limpieza" + tag, _bind(self._janitor, cfg))]
            if cfg.sftp.enabled:
                parts.append(Part("SFTP" + tag, _bind(self._run_sftp, cfg, consumer)))
            if cfg.dropfolder.dirs:
                parts.append(Part("carpeta vigilada" + tag,
                                  _bind(self._run_dropfolder, cfg, consumer)))
            if cfg.pull.url:
                parts.append(Part("descarga HTTPS" + tag, _bind(self._run_pull, cfg, consumer)))
        if self.cfg.monitor.listen:
            parts.append(Part("API de sondeos", self._run_probe_api))
        if self.cfg.console.enabled:
            parts.append(Part("consola", self._run_console))
        for name, site in self.sites.items():
            tag, ledger = f" ({name})" if name else "", self.site_ledgers[name]
            if site.monitor.enabled:
                parts.append(Part("monitor" + tag, _bind(self._run_monitor, site, ledger)))
            if site.shield.enabled:
                parts.append(Part("escudo" + tag, _bind(self._run_shield, site, ledger)))
            if site.analytics.enabled:
                parts.append(Part("analítica" + tag, _bind(self._run_analytics, site)))
        return parts

    def _run_sftp(self, cfg: Config, consumer: InboxConsumer, stop: threading.Event) -> None:
        from difusor.receive.sftp import start_sftp_server

        async def main() -> None:
            server = await start_sftp_server(cfg, on_delivered=consumer.notify, log=log.info)
            log.info(f"SFTP escuchando en {cfg.sftp.listen} (usuario {cfg.sftp.user})")
            try:
                while not stop.is_set():
                    await asyncio.sleep(0.2)
            finally:
                server.close()
                await server.wait_closed()

        asyncio.run(main())

    def _run_dropfolder(self, cfg: Config, consumer: InboxConsumer, stop: threading.Event) -> None:
        from difusor.receive.dropfolder import DropFolderWatcher

        DropFolderWatcher(cfg, on_delivered=consumer.notify, log=log.info).run(stop)

    def _run_pull(self, cfg: Config, consumer: InboxConsumer, stop: threading.Event) -> None:
        from difusor.receive.pull import Puller

        Puller(cfg, on_delivered=consumer.notify, log=log.info).run(stop)

    def _run_probe_api(self, stop: threading.Event) -> None:
        from difusor.monitor.api import ProbeAPI

        # Remote agents measure the public site: with [sites], the official one's record.
        name = default_site(self.cfg)
        cfg = self.sites.get(name, self.cfg)
        ledger = self.site_ledgers.get(name, self.ledger)
        ProbeAPI.from_config(cfg, ledger, log=log.info).run(stop)

    def _run_monitor(self, cfg: Config, ledger: Ledger, stop: threading.Event) -> None:
        from difusor.monitor.alerts import Alerter
        from difusor.monitor.service import Monitor

        alerter = Alerter(cfg, ledger, log=_said(cfg))
        # One monitor watches every volume of the whole file: a disk the sites share is one
        # incident, in the record of the site a command means by default.
        watch = cfg.site_name == default_site(self.cfg)
        try:
            Monitor(cfg, ledger, log=_said(cfg), on_incident=alerter.incident, disks=self.cfg,
                    watch_disks=watch).run(stop)
        finally:
            alerter.close()

    def _run_shield(self, cfg: Config, ledger: Ledger, stop: threading.Event) -> None:
        from difusor.shield.service import Shield

        Shield(cfg, ledger, log=_said(cfg)).run(stop)

    def _run_analytics(self, cfg: Config, stop: threading.Event) -> None:
        from difusor.analytics.live import LiveIngest

        LiveIngest(cfg, log=_said(cfg)).run(stop)

    def _janitor(self, cfg: Config, stop: threading.Event) -> None:
        from difusor.receive.sftp import clean_abandoned

        uploads = StateLayout(cfg.state_dir).uploads
        while True:
            for path in clean_abandoned(uploads, cfg.receive.abandoned_after):
                log.info(f"limpieza: borrada la subida abandonada o ya entregada {path.name}")
            if stop.wait(60.0):
                return

    def _run_web(self, stop: threading.Event) -> None:
        self._web = _child(["serve", "--config", str(self.config_path)])
        _watch(self._web, stop, "el servidor web")

    def _run_console(self, stop: threading.Event) -> None:
        """The console in its own process (it never slows publishing or serving; a crash is
        restarted like any part), once it has somebody to let in."""
        users = StateLayout(self.cfg.state_dir).console_users
        if not users.exists():
            log.info(f"consola: sin usuarios; se abre en {self.cfg.console.listen} en cuanto "
                     "exista uno («difusor console user add NOMBRE»)")
            while not users.exists():
                if stop.wait(1.0):
                    return
        log.info(f"consola en http://{self.cfg.console.listen}/")
        _watch(_child(["console", "serve", "--config", str(self.config_path)]), stop,
               "la consola")

    # -- supervision --------------------------------------------------------------------

    def _guard(self, part: Part) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                part.target(self.stop)
                if self.stop.is_set():
                    return
                reason = "terminó sin que se le pidiera"
            except Exception as exc:
                if self.stop.is_set():
                    return
                reason = f"falló: {exc}"
                log.debug("".join(traceback.format_exception(exc)))
            if time.monotonic() - started > _HEALTHY_AFTER:
                part.backoff = 1.0
            part.restarts += 1
            log.error(f"{part.name} {reason}; se reinicia en {part.backoff:.0f} s "
                      f"(reinicio n.º {part.restarts})")
            self.ledger.event("service_restarted", f"{part.name} {reason}; reiniciado",
                              detail={"part": part.name, "restarts": part.restarts})
            if self.stop.wait(part.backoff):
                return
            part.backoff = min(part.backoff * 2, _BACKOFF_MAX)

    def start(self) -> None:
        self.ledger.event("run_started", "difusor en marcha: " + ", ".join(p.name for p in self.parts))
        for part in self.parts:
            part.thread = threading.Thread(target=self._guard, args=(part,), name=part.name,
                                           daemon=True)
            part.thread.start()

    def shutdown(self) -> None:
        self.stop.set()
        deadline = time.monotonic() + STOP_BUDGET
        for part in self.parts:
            if part.thread:
                part.thread.join(max(0.0, deadline - time.monotonic()))
        unfinished = [p.name for p in self.parts if p.thread and p.thread.is_alive()]
        if self._web is not None:
            _terminate(self._web, timeout=max(0.5, deadline - time.monotonic()))
        message = "difusor detenido"
        if unfinished:  # e.g. a publish mid-way: crash-safe, resumed on the next start
            message += f" (sin esperar a: {', '.join(unfinished)})"
        self.ledger.event("run_stopped", message)
        log.info(message)
        for consumer in self.consumers.values():
            consumer.close()
        for name, ledger in self.site_ledgers.items():
            if name:
                ledger.close()
        self.ledger.close()
        os.close(self._lock)

    def run_forever(self) -> None:
        def _signal(signum: int, _frame: object) -> None:
            log.info(f"señal {signal.Signals(signum).name} recibida: deteniendo…")
            self.stop.set()

        previous = {s: signal.signal(s, _signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self.start()
        try:
            while not self.stop.wait(0.5):
                pass
        finally:
            self.shutdown()
            for s, handler in previous.items():
                signal.signal(s, handler)


def _bind(target: Callable[..., None], *args: object) -> Callable[[threading.Event], None]:
    """A part's target with its site or feed bound (a part is called with the stop event)."""
    return lambda stop: target(*args, stop)


def _hold_run_lock(path: Path) -> int:
    """One ``difusor run`` per state folder (two would receive, publish and serve twice). The lock
    dies with the process, SIGKILL included; the server it starts does not inherit it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise BusyError(f"ya hay un «difusor run» en marcha con el estado {path.parent} (pid {holder}); "
                        "detenlo antes de iniciar otro") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _child(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "difusor", *args],
        start_new_session=True,  # our SIGINT is ours to relay, not the terminal's
        env={**os.environ, PARENT_ENV: str(os.getpid())},  # it dies with us, even by SIGKILL
    )


def _watch(proc: subprocess.Popen[bytes], stop: threading.Event, what: str) -> None:
    """Until ``stop`` (then the child is stopped) or the child's end (an error: restarted)."""
    try:
        while proc.poll() is None:
            if stop.wait(0.2):
                return
        raise RuntimeError(f"{what} terminó con código {proc.returncode}")
    finally:
        _terminate(proc, timeout=5.0)


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Stop a child started in its own session, and whatever it spawned (the server's workers
    outlive a crashed parent otherwise, holding the port)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# Control characters a client could smuggle into a logged value (ANSI escapes, BEL, CR) are
# written as \xNN: the operator's terminal and difusor.log show them, never obey them.
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(32), 127] if c not in (9, 10)}
LOG_MAX_BYTES = 64 * 1024 * 1024
LOG_BACKUPS = 10


def _said(cfg: Config) -> Callable[[str], None]:
    """The log, each line naming its site when there are several (two monitors, two shields)."""
    if not cfg.site_name:
        return log.info
    return lambda message: log.info(f"[{cfg.site_name}] {message}")


class _Escaping(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).translate(_CONTROLS)


class _PrivateRotatingLog(logging.handlers.RotatingFileHandler):
    """difusor.log rotated by size (difusor.log.1 … .10), each file 0640: it names addresses."""

    def _open(self):  # type: ignore[no-untyped-def]
        private_file(Path(self.baseFilename))
        return super()._open()


def setup_logging(logfile: Path, *, verbose: bool = False) -> None:
    """Operator lines on stderr and in the state's log file, each with its time."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    fmt = _Escaping("%(asctime)s.%(msecs)03d %(message)s", "%Y-%m-%d %H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt)
    console.setLevel(logging.DEBUG if verbose else logging.INFO)
    file = _PrivateRotatingLog(logfile, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS,
                               encoding="utf-8")
    file.setFormatter(fmt)
    log.handlers[:] = [console, file]
    log.setLevel(logging.DEBUG)
    log.propagate = False
