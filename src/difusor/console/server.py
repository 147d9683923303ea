"""``difusor console serve``: the console in a process of its own (started and restarted by
``difusor run``), one granian worker over the Starlette app."""

from __future__ import annotations

import contextlib
import logging
import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from granian import Granian
from granian.constants import Interfaces
from granian.log import LogLevels

from difusor import config as config_mod
from difusor.config import Config, parse_address
from difusor.paths import StateLayout
from difusor.serve.lifeline import claim_port, die_with_parent, watch_parent
from difusor.sites.catalog import default_site

if TYPE_CHECKING:
    from difusor.console.desks import Desk
    from difusor.ledger import Ledger


def build(root: Config, config_path: Path, site: str | None = None) -> Any:
    """The ASGI app: every site's console (the default one, the one commands mean, at ``/``),
    or only ``site``'s when named, each with its own ledger."""
    from difusor.console.app import Console
    from difusor.console.desks import Desks
    from difusor.console.sessions import LoginThrottle, Sessions
    from difusor.console.users import UserStore
    from difusor.ledger import Ledger

    root_ledger = Ledger(StateLayout(root.state_dir).ledger)
    first = default_site(root) if site is None else site
    names = [first] if site is not None or not root.sites else [
        first, *(n for n in root.sites if n != first)]
    c = root.console
    console = Console(
        Desks([_desk(root, config_path, root_ledger, name) for name in names]),
        UserStore(StateLayout(root.state_dir).console_users),
        Sessions(c.session_hours), LoginThrottle(c.login_attempts, c.login_window_minutes))
    return console.app()


def _desk(root: Config, config_path: Path, root_ledger: Ledger, name: str) -> Desk:
    from difusor.console.actions import Actions
    from difusor.console.desks import Desk
    from difusor.console.live import Live
    from difusor.console.reader import TrafficReader
    from difusor.console.snapshot import Snapshot
    from difusor.console.traffic import Traffic
    from difusor.ledger import Ledger

    cfg = root.for_site(name) if name else root
    ledger = Ledger(StateLayout(cfg.state_dir).create().ledger) if name else root_ledger
    title = f"Consola · {cfg.site.name}"
    label = name
    if name:
        role = root.sites[name].role
        label = name if name == role else f"{name} ({role})"
        title += f" · {label}"
    return Desk(name, title, label,
                Live(Snapshot(root, cfg, root_ledger, ledger), TrafficReader(Traffic(cfg))),
                Actions(cfg, ledger, config_path, name))


def load_app(config_path: str, _target: str = "") -> Any:
    watch_parent()  # the worker never outlives its server process
    path = Path(config_path)
    return build(config_mod.load(path), path)


NICE = 5


def step_aside() -> None:
    """The console watches; serving and publishing come first. Its process (and the worker it
    spawns, which inherits this) runs at a lower priority and under SCHED_BATCH, so its
    wake-ups do not preempt the web server's threads; its log reading goes lower still
    (reader.py). With autogroup (most kernels) a session of its own is weighed as a group,
    where only the group's nice counts: that is set too, when the session is the console's own
    (as ``difusor run`` starts it), never an operator's shell."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, max(NICE, os.getpriority(os.PRIO_PROCESS, 0)))
    if os.getsid(0) != os.getpid():
        return
    with contextlib.suppress(OSError, ValueError):
        Path("/proc/self/autogroup").write_text(f"{NICE}\n")


def serve(cfg: Config, config_path: Path) -> None:
    step_aside()
    die_with_parent()
    host, port = parse_address(cfg.console.listen)
    claim_port(host, port, "[console] listen")
    server = Granian("difusor.console.server:load_app", address=host, port=port,
                     interface=Interfaces.ASGI, workers=1, websockets=False,
                     log_level=LogLevels.warning, respawn_failed_workers=True,
                     workers_kill_timeout=4)
    logging.getLogger("_granian").setLevel(logging.ERROR)
    server.serve(target_loader=partial(load_app, str(config_path.resolve())), wrap_loader=False)
