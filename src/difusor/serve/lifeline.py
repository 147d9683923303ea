"""The web server never outlives what started it, and never shares its port with a stranger.

- ``claim_port``: before granian binds (with SO_REUSEPORT, so its workers share one port), a plain
  bind of the same address tells whether anybody else listens there — another difusor, an orphan
  of a killed one, nginx. The kernel would otherwise split the traffic between them silently.
- ``die_with_parent``: the server process started by ``difusor run`` asks the kernel for SIGTERM
  when ``run`` dies, even by SIGKILL (PR_SET_PDEATHSIG); granian then stops its workers. It also
  watches its parent, like a worker, in case that signal was lost.
- ``watch_parent``: each worker checks every half second that its parent is still the process
  that started it, and exits when it was orphaned (a SIGKILLed server process). A thread-bound
  PDEATHSIG would be wrong here: granian spawns and respawns workers from several threads.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable

from difusor.errors import ConfigError

PARENT_ENV = "DIFUSOR_PARENT_PID"  # set by `difusor run` for the server process it starts
WATCH_SECONDS = 0.5
STOP_GRACE = 2.0  # seconds granian gets to stop its workers before the group is killed
_PR_SET_PDEATHSIG = 1
log = logging.getLogger("difusor.serve")


def claim_port(host: str, port: int, setting: str = "[web] listen") -> None:
    """Refuse (exit 3) when something already listens on host:port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"el puerto {host}:{port} ya está en uso por otro proceso (¿otro difusor, o uno "
                f"que quedó huérfano?); no sirvo a medias a su lado: detenlo o cambia {setting}"
            ) from None
        raise ConfigError(f"no puedo usar {host}:{port}: {exc.strerror or exc}") from None
    finally:
        probe.close()


def die_with_parent() -> None:
    """In the server process that ``difusor run`` started: end with it. The kernel's signal is
    the fast path; a watch of the parent backs it (granian, busy starting or stopping, has been
    seen to sit on a SIGTERM for seconds), ending the whole process group after STOP_GRACE."""
    parent = os.environ.pop(PARENT_ENV, None)
    if parent is None:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(parent):  # it died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)
    watch_parent(int(parent), _end_server)


def _end_server() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # granian stops its workers
    time.sleep(STOP_GRACE)
    os.killpg(0, signal.SIGKILL)  # still here: run started us in a session (and group) of our own


def _exit_worker() -> None:
    os._exit(0)


def watch_parent(parent: int | None = None, on_orphan: Callable[[], None] = _exit_worker
                 ) -> threading.Thread:
    """Call ``on_orphan`` (by default: exit at once, as a worker does) once ``parent`` is gone."""
    parent = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_SECONDS)
        log.error("servidor web: el proceso que lo inició (pid %d) ya no existe; este proceso "
                  "(pid %d) termina para no quedar huérfano", parent, os.getpid())
        on_orphan()

    thread = threading.Thread(target=watch, name="difusor-lifeline", daemon=True)
    thread.start()
    return thread
