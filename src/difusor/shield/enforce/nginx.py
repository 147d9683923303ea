"""nginx: a generated include of ``deny`` lines, replaced atomically, then a graceful reload.

``difusor nginx-config`` includes ``[shield] nginx_include`` in every ``server`` block when it is
set. A reload (``nginx -s reload``: SIGHUP to the master) starts new workers with the new list
while the old ones finish the requests they hold, so nothing in flight is cut. The file is
rewritten, and nginx reloaded, only when its content changes: the shield calls ``apply`` with the
whole desired state every time, and a reload per call would churn workers for nothing.

A reload whose configuration nginx refuses is otherwise silent (the master keeps the old one and
``nginx -s reload`` still exits 0), so when the reload command is ``nginx … -s reload`` the same
command with ``-t`` checks the configuration first; if it fails, the previous include is put back.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from difusor.config import Config
from difusor.errors import ShieldError
from difusor.shield.enforce.base import EnforcerBase, Log
from difusor.shield.model import Block

HEADER = (
    "# difusor — bloqueos del escudo para nginx, generado; no lo edites a mano\n"
    "# (se reescribe y nginx se recarga con gracia en cada cambio; ver «difusor shield status»).\n"
)
TIMEOUT = 20.0


class NginxEnforcer(EnforcerBase):
    name = "nginx"

    def __init__(self, cfg: Config, *, log: Log | None = None) -> None:
        """Reads ``[shield] nginx_include`` and ``nginx_reload`` (checked when loading)."""
        super().__init__(cfg, log=log)
        self.path = cfg.path(cfg.shield.nginx_include).absolute()
        self.reload = list(cfg.shield.nginx_reload)
        # "nginx [opts] -s reload" → "nginx [opts] -t -q": the same binary and configuration.
        self.test = ([*self.reload[:-2], "-t", "-q"]
                     if self.reload[-2:] == ["-s", "reload"] else None)

    def render(self, blocks: list[Block], attack_mode: bool) -> str:
        lines = [HEADER, f"# {len(blocks)} bloqueo{'s' if len(blocks) != 1 else ''}"
                 f"{'; modo ataque' if attack_mode else ''}\n"]
        for block in blocks:
            note = f"  # hasta {self.when(block.until)}" + (f": {block.reason}" if block.reason else "")
            lines.append(f"deny {block.key};{note}\n")
        return "".join(lines)

    def _sync(self, blocks: list[Block], attack_mode: bool) -> bool:
        text = self.render(blocks, attack_mode)
        try:
            before: str | None = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            before = None
        if before == text:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _replace(self.path, text)
        if self.test is not None:
            failed = _run(self.test)
            if failed:
                if before is None:
                    self.path.unlink(missing_ok=True)
                else:
                    _replace(self.path, before)
                raise ShieldError(f"nginx rechaza la configuración con los bloqueos ({failed}); "
                                  f"dejé {self.path} como estaba")
        failed = _run(self.reload)
        if failed:
            raise ShieldError(f"no pude recargar nginx con «{' '.join(self.reload)}»: {failed}")
        return True


def _replace(path: Path, text: str) -> None:
    """Write beside ``path`` then rename over it: nginx never reads half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # nginx's master reads it; nothing secret in it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _run(argv: list[str]) -> str:
    """Run a command; '' when it succeeded, else its first error line (Spanish when it has none)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
    except FileNotFoundError:
        return f"no existe la orden «{argv[0]}»"
    except subprocess.TimeoutExpired:
        return f"no terminó en {TIMEOUT:.0f} s"
    if done.returncode == 0:
        return ""
    lines = [x.strip() for x in (done.stderr + done.stdout).splitlines() if x.strip()]
    return (lines[0] if lines else f"salió con {done.returncode}")[:300]
