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
    report_to: Annotated[str | None, typer.Option(
        "--report-to", help="URL de la API de sondeos del difusor (\\[monitor] listen), p. ej. "
        "http://prep.example.mx:9100.")] = None,
    token: Annotated[str | None, typer.Option(
        envvar="DIFUSOR_PROBE_TOKEN", help="Token de los sondeos remotos (mejor en la variable "
        "DIFUSOR_PROBE_TOKEN que en la línea de órdenes).")] = None,
    name: Annotated[str | None, typer.Option(
        help="Nombre de este punto de sondeo en la bitácora (por omisión, el del equipo).")]
    = None,
    target: Annotated[list[str] | None, typer.Option(
        help="Objetivo NOMBRE=URL (repetible); por omisión, los que indica el servidor.")] = None,
    interval: Annotated[float, typer.Option(help="Segundos entre rondas.", min=1)] = 30.0,
    once: Annotated[bool, typer.Option("--once", help="Una sola ronda y salir.")] = False,
    ca_file: Annotated[str, typer.Option(help="CA a confiar para la API y los objetivos (vacío = "
                                         "las del sistema).")] = "",
    sftp_speed: Annotated[str | None, typer.Option(
        "--sftp-speed", metavar="HOST:PUERTO", help="En vez de sondear: mide la velocidad de "
        "subida SFTP (mínimo de la convocatoria: 40 MB/s; la mediana de tres subidas) con la "
        "llave de verificación del difusor; el archivo de prueba va a /verificacion y nunca se "
        "publica.")] = None,
    user: Annotated[str | None, typer.Option(
        help="Con --sftp-speed: usuario SFTP (por omisión, \\[sftp] user).")] = None,
    key: Annotated[Path | None, typer.Option(
        help="Con --sftp-speed: llave privada de verificación (por omisión, la del difusor: "
        "state/keys/check_ed25519).")] = None,
    size: Annotated[int, typer.Option(
        help="Con --sftp-speed: tamaño del archivo de prueba, en MB (10⁶ bytes).", min=1)] = 200,
    remote_dir: Annotated[str, typer.Option(
        help="Con --sftp-speed: carpeta remota de la prueba.")] = "/verificacion",
    fingerprint: Annotated[str | None, typer.Option(
        help="Con --sftp-speed: huella SHA256:… esperada de la llave del servidor.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Con --sftp-speed: salida JSON.")]
    = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Sondea desde otro punto de la red y reporta los resultados al difusor."""
    if sftp_speed is not None:
        _sftp_speed(sftp_speed, user, key, size, remote_dir, fingerprint, json_out, config)
        return
    if not report_to or not token:
        from typer._click.exceptions import UsageError

        raise UsageError("faltan --report-to y --token (o DIFUSOR_PROBE_TOKEN); o --sftp-speed "
                         "HOST:PUERTO para medir la velocidad de subida SFTP")
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
        tls_warn_days=monitor.tls_warn_days, ca_file=ca_file, sample=monitor.sample,
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


def _sftp_speed(address: str, user: str | None, key: Path | None, size: int, remote_dir: str,
                fingerprint: str | None, json_out: bool, config: Path) -> None:
    """``probe --sftp-speed``: one measurement (three rounds, the median counts); exit 0 only
    when it reaches the minimum."""
    import dataclasses
    import json

    from difusor.errors import DifusorError
    from difusor.monitor.sftpspeed import MB, measure_upload

    try:
        host, port = config_mod.parse_address(address)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--sftp-speed") from None
    # On the difusor's own machine its difusor.toml gives the user and the check key; from a
    # remote vantage both come on the command line.
    cfg = config_mod.load(config) if config.is_file() else None
    if key is None:
        if cfg is None:
            raise typer.BadParameter("falta la llave (no hay difusor.toml de donde tomarla)",
                                     param_hint="--key")
        from difusor.receive.sftp.checkkey import check_key

        key = check_key(cfg)
    if not key.is_file():
        raise typer.BadParameter(f"no existe {key}", param_hint="--key")
    login = user or (cfg.sftp.user if cfg is not None else None)
    if not login:
        raise typer.BadParameter("falta el usuario (no hay difusor.toml de donde tomarlo)",
                                 param_hint="--user")
    result = measure_upload(host, port, login, key, size * MB, remote_dir=remote_dir,
                            known_fingerprint=fingerprint)
    if json_out:
        out.print_json(json.dumps(dataclasses.asdict(result), ensure_ascii=False))
    elif result.seconds > 0:
        out.print(result.message, markup=False)
    if result.seconds <= 0:  # not measured: the reason, as every failure, on stderr
        raise DifusorError(result.message)
    if not result.ok:
        raise DifusorError(f"la subida SFTP no alcanza el mínimo de la convocatoria "
                           f"({result.minimum:g} MB/s)")
