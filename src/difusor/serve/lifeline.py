"""The web server never outlives what started it, and never shares its port with a stranger.

- ``claim_port``: before granian binds (with SO_REUSEPORT, so its workers share one port), a plain
  bind of the same address tells whether anybody else listens there — another difusor, an orphan
  of a killed one, nginx. The kernel would otherwise split the traffic between them silently.
- ``die_with_parent``: the server process started by ``difusor run`` asks the kernel for SIGTERM
  when ``run`` dies, even by SIGKILL (PR_SET_PDEATHSIG); granian then stops its workers.
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

from difusor.errors import ConfigError

PARENT_ENV = "DIFUSOR_PARENT_PID"  # set by `difusor run` for the server process it starts
WATCH_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1
log = logging.getLogger("difusor.serve")


def claim_port(host: str, port: int) -> None:
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
                f"que quedó huérfano?); no sirvo a medias a su lado: detenlo o cambia [web] listen"
            ) from None
        raise ConfigError(f"no puedo usar {host}:{port}: {exc.strerror or exc}") from None
    finally:
        probe.close()


def die_with_parent() -> None:
    """In the server process that ``difusor run`` started: end with it."""
    parent = os.environ.pop(PARENT_ENV, None)
    if parent is None:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(parent):  # it died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def watch_parent() -> threading.Thread:
    """In a worker: exit as soon as its parent is gone."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(WATCH_SECONDS)
            if os.getppid() != parent:
                log.error("servidor web: el proceso principal (pid %d) ya no existe; este proceso "
                          "(pid %d) termina para no quedar huérfano", parent, os.getpid())
                os._exit(0)

    thread = threading.Thread(target=watch, name="difusor-lifeline", daemon=True)
    thread.start()
    return thread
