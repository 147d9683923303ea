"""``difusor serve``, ``run``, ``probe``, ``demo``: what runs in the foreground until Ctrl-C."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difusor import config as config_mod
from difusor.cli.kit import DEFAULT_CONFIG, ConfigOpt, err, out


def serve(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Sirve el corte en línea (y cada corte nuevo en cuanto se activa)."""
    from difusor.serve.server import serve as run_server

    cfg = config_mod.load(config)
    err.print(f"Sirviendo {cfg.web.listen} con {cfg.web.workers} procesos (Ctrl-C para detener)")
    run_server(cfg, config)


def run(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Más detalle en la consola.")]
    = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Todo el difusor en primer plano: receptores, publicador y servidor web (Ctrl-C detiene)."""
    from difusor.monitor.api import check_token
    from difusor.run.supervisor import Supervisor, setup_logging

    cfg = config_mod.load(config)
    check_token(cfg)  # without it the probe API could only fail and be restarted forever
    supervisor = Supervisor(cfg, config)
    setup_logging(supervisor.state.logs / "difusor.log", verbose=verbose)
    err.print(f"Difusor en marcha: web {cfg.web.listen}"
              + (f", SFTP {cfg.sftp.listen}" if cfg.sftp.enabled else "")
              + " (Ctrl-C para detener)")
    supervisor.run_forever()


def demo(
    fast: Annotated[bool, typer.Option(help="Un corte cada 5 segundos en vez de cada 10 minutos.")]
    = False,
    folder: Annotated[Path, typer.Option(help="Carpeta de la demostración (se recrea).")]
    = Path("demo-state"),
) -> None:
    """Todo el sistema en 127.0.0.1 con una autoridad simulada (datos sintéticos)."""
    from difusor.demo.runner import run_demo

    run_demo(folder, fast=fast, say=out.print)


def probe(
    report_to: Annotated[str, typer.Option(
        "--report-to", help="URL de la API de sondeos del difusor (\\[monitor] listen), p. ej. "
        "http://prep.example.mx:9100.")],
    token: Annotated[str, typer.Option(
        envvar="DIFUSOR_PROBE_TOKEN", help="Token de los sondeos remotos (mejor en la variable "
        "DIFUSOR_PROBE_TOKEN que en la línea de órdenes).")],
    name: Annotated[str | None, typer.Option(
        help="Nombre de este punto de sondeo en la bitácora (por omisión, el del equipo).")]
    = None,
    target: Annotated[list[str] | None, typer.Option(
        help="Objetivo NOMBRE=URL (repetible); por omisión, los que indica el servidor.")] = None,
    interval: Annotated[float, typer.Option(help="Segundos entre rondas.", min=1)] = 30.0,
    once: Annotated[bool, typer.Option("--once", help="Una sola ronda y salir.")] = False,
    ca_file: Annotated[str, typer.Option(help="CA a confiar para la API y los objetivos (vacío = "
                                         "las del sistema).")] = "",
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Sondea desde otro punto de la red y reporta los resultados al difusor."""
    import socket
    import threading

    from difusor.monitor.agent import ProbeAgent, Round, Target

    # The agent usually runs where there is no difusor.toml; when there is one, its [monitor]
    # thresholds apply.
    monitor = (config_mod.load(config) if config.is_file() else config_mod.Config()).monitor
    agent = ProbeAgent(
        report_to, token, name=name or socket.gethostname().split(".")[0],
        targets=[Target.parse(spec) for spec in target or []], interval=interval,
        timeout=monitor.timeout, degraded_ms=monitor.degraded_ms,
        tls_warn_days=monitor.tls_warn_days, ca_file=ca_file,
        log=lambda line: err.print(line, markup=False))

    def show(done: Round) -> None:
        for r in done.results:
            mark = "✓" if r.ok and not r.failure else ("!" if r.ok else "✗")
            latency = f"{r.latency_ms:.0f} ms" if r.latency_ms is not None else "sin respuesta"
            out.print(f"{mark} {r.target}: {r.message} ({latency})", markup=False)
        out.print(f"Reportados {done.recorded} resultados a {agent.base} como «{agent.name}».",
                  markup=False)

    with agent:
        if once:
            show(agent.run_once())
            return
        err.print(f"Sondeando cada {interval:g} s y reportando a {agent.base} como «{agent.name}» "
                  "(Ctrl-C para detener)", markup=False)
        agent.run(threading.Event(), on_round=show)
