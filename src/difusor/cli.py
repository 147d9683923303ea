"""The ``difusor`` command: a thin layer over the library objects.

Each command parses its options, builds an object from the config, calls one method and maps
the outcome to an exit code. One place (``main``) decides what the operator sees on failure:
an expected error is one Spanish line on stderr with its own exit code (``errors.py``); a bad
argument or option is a usage error, ``uso incorrecto``, exit 64 (EX_USAGE: 2 already means
"package refused" for ``publish``); anything else keeps its traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

# Typer (pinned) vendors click; its usage errors are only reachable there.
from typer._click.exceptions import NoArgsIsHelpError as _HelpShown
from typer._click.exceptions import UsageError as _UsageError

from difusor import clispanish
from difusor import config as config_mod
from difusor.analytics.commands import analytics_app
from difusor.clikit import (
    DEFAULT_CONFIG,
    ConfigOpt,
    err,
    existing_state,
    ledger_for,
    out,
    progress,
)
from difusor.errors import DifusorError, PackageRefused
from difusor.paths import StateLayout, private_dir
from difusor.shield.commands import shield_app
from difusor.shield.drill_cli import simulate_attack

app = typer.Typer(
    name="difusor",
    help="Difusor oficial del PREP: recibe, verifica, publica y sirve cada corte sin modificarlo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
simulate_app = typer.Typer(help="Simulacros: paquetes sintéticos para ensayos y pruebas.",
                           no_args_is_help=True)
app.add_typer(simulate_app, name="simulate")
app.add_typer(analytics_app, name="analytics")
app.add_typer(shield_app, name="shield")
simulate_app.command("attack")(simulate_attack)

@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Carpeta donde crear difusor.toml y el estado.")],
    web_listen: Annotated[str, typer.Option(help="HOST:PUERTO del servidor web.")] = "127.0.0.1:8080",
    sftp_listen: Annotated[str, typer.Option(help="HOST:PUERTO del SFTP.")] = "127.0.0.1:2222",
    authorized_key: Annotated[
        Path | None, typer.Option(help="Llave pública de la autoridad (se copia).")
    ] = None,
    name: Annotated[str, typer.Option(help="Nombre del sitio.")] = "PREP",
    force: Annotated[bool, typer.Option(help="Reemplazar un difusor.toml existente.")] = False,
    self_signed_tls: Annotated[bool, typer.Option(
        "--self-signed-tls", help="Crear un certificado autofirmado de desarrollo "
        "(keys/tls.crt, keys/tls.key) y servir por HTTPS.")] = False,
    allow_from: Annotated[list[str] | None, typer.Option(
        "--allow-from", metavar="CIDR", help="Red de la autoridad desde la que se acepta el SFTP "
        "(repetible); sin ella, cualquier IP puede intentarlo.")] = None,
    operation_end: Annotated[str, typer.Option(
        "--operation-end", metavar="FECHA", help="Fin de la operación, dd/mm/aaaa HH:MM o ISO "
        "8601 (en la zona del sitio si no la lleva).")] = "",
) -> None:
    """Crea DIRECTORY/difusor.toml y las carpetas de estado."""
    target = directory / config_mod.DEFAULT_CONFIG
    if target.exists() and not force:
        raise DifusorError(f"{target} ya existe; usa --force para reemplazarlo")
    tls = ("keys/tls.crt", "keys/tls.key") if self_signed_tls else ("", "")
    networks = [_network(n) for n in allow_from or []]
    end = _moment_option(operation_end, "--operation-end") if operation_end else ""
    try:
        text = config_mod.render_default(web_listen=web_listen, sftp_listen=sftp_listen, name=name,
                                         tls_cert=tls[0], tls_key=tls[1], allow_from=networks,
                                         operation_end=end)
    except ValueError as exc:
        raise DifusorError(f"dirección inválida: {exc}") from None
    if authorized_key is not None and not authorized_key.is_file():
        raise DifusorError(f"no existe la llave pública {authorized_key}")
    directory.mkdir(parents=True, exist_ok=True)
    keys = private_dir(directory / "keys")  # 0700 whatever the umask: SSH and TLS keys
    auth = keys / "authorized_keys"
    if authorized_key is not None:
        shutil.copyfile(authorized_key, auth)
    elif not auth.exists():
        auth.write_text("")
    auth.chmod(0o600)
    if self_signed_tls:
        from difusor.serve.selfsigned import write_self_signed

        write_self_signed(directory / tls[0], directory / tls[1],
                          [config_mod.parse_address(web_listen)[0]])
    _write_private(target, text)
    cfg = config_mod.load(target)
    StateLayout(cfg.state_dir).create()
    ledger_for(cfg).close()
    out.print(f"Listo: {target}")
    out.print(f"  estado en {cfg.state_dir}")
    if self_signed_tls:
        out.print(f"  HTTPS con certificado autofirmado de desarrollo: {directory / tls[0]} "
                  "(90 días; en producción, uno de una CA: docs/nginx.md)")
    out.print(f"  siguiente paso: difusor publish PAQUETE --config {target}")


def _network(value: str) -> str:
    try:
        return config_mod._check_network(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--allow-from") from None


def _moment_option(value: str, option: str) -> str:
    from difusor.moments import BadMoment, parse_moment

    zone = ZoneInfo(config_mod.SiteSettings().timezone)
    try:
        return parse_moment(value, zone).isoformat()
    except BadMoment as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def _write_private(path: Path, text: str) -> None:
    """The config names secrets' variables and the authority's networks: 0600, any umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(fd, 0o600)  # an existing file (--force) keeps its old mode otherwise
        f.write(text)


@app.command()
def serve(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Sirve el corte en línea (y cada corte nuevo en cuanto se activa)."""
    from difusor.serve.server import serve as run_server

    cfg = config_mod.load(config)
    err.print(f"Sirviendo {cfg.web.listen} con {cfg.web.workers} procesos (Ctrl-C para detener)")
    run_server(cfg, config)


@app.command()
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


@app.command()
def publish(
    package: Annotated[Path, typer.Argument(help="Paquete .zip, .tar, .tar.gz o .tgz.")],
    force: Annotated[
        bool, typer.Option(help="Publicar aunque sea un corte anterior o ya publicado con otro "
                           "contenido.")
    ] = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Recibe, verifica y publica un paquete. Sale con 0 si quedó en línea, 2 si se rechazó."""
    from difusor.pipeline import Publisher

    cfg = config_mod.load(config)
    existing_state(cfg)
    with ledger_for(cfg) as ledger, progress("verificando") as bar:
        publisher = Publisher(cfg, ledger, progress=bar)
        publisher.log = lambda line: out.print(line, markup=False)
        try:
            publisher.publish(package, force=force, on_live=lambda o: out.print(o.message))
        except PackageRefused as refusal:
            raise PackageRefused(
                refusal.code,
                f"paquete rechazado: {refusal.message} (original en "
                f"{StateLayout(cfg.state_dir).quarantine})",
            ) from None


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Salida JSON.")] = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """El corte en línea y el historial reciente."""
    from difusor.moments import printed
    from difusor.publish.status import status as build_status
    from difusor.store.layout import StoreLayout

    cfg = config_mod.load(config)
    existing_state(cfg)
    zone = ZoneInfo(cfg.site.timezone)
    with ledger_for(cfg) as ledger:
        doc = build_status(ledger, StoreLayout(StateLayout(cfg.state_dir).store), zone)
    warnings = _warnings(cfg)
    if as_json:
        out.print_json(json.dumps({**doc, "avisos": warnings}, ensure_ascii=False))
        return
    for line in warnings:
        out.print(f"Aviso: {line}", markup=False)
    corte = doc["corte"]
    if corte is None:
        out.print("Todavía no hay un corte publicado.")
    else:
        out.print(f"Corte en línea: [bold]{corte['id']}[/] — {printed(corte['fecha_hora'], zone)}")
        out.print(f"  publicado {printed(corte['publicado'], zone)}; "
                  f"paquete sha256 {corte['paquete_sha256'][:16]}…")
    if doc["historial"]:
        table = Table("corte", "fecha y hora del corte", "activado", "causa")
        for row in doc["historial"]:
            table.add_row(row["id"], printed(row["fecha_hora"], zone),
                          printed(row["activado"], zone), row["causa"])
        out.print(table)


def _warnings(cfg: config_mod.Config) -> list[str]:
    """Safety settings left open, said every time the operator looks."""
    found = []
    if not cfg.sftp.allow_from:
        found.append("[sftp] allow_from está vacío: cualquier IP puede intentar entrar al SFTP; "
                     "pon ahí las redes de la autoridad")
    return found


@app.command()
def rollback(
    corte_id: Annotated[str | None, typer.Argument(help="Corte a poner en línea.")] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Vuelve a poner en línea un corte anterior (por omisión, el previo)."""
    from difusor.pipeline import Publisher

    cfg = config_mod.load(config)
    existing_state(cfg)
    with ledger_for(cfg) as ledger:
        publisher = Publisher(cfg, ledger)
        publisher.log = lambda line: out.print(line, markup=False)
        target = publisher.rollback(corte_id)
    out.print(f"Corte {target} en línea de nuevo.")


def _at_least_one(value: int) -> int:
    if value < 1:
        raise typer.BadParameter(f"debe ser al menos 1 (vale {value}); el corte en línea se "
                                 "conserva siempre")
    return value


@app.command()
def gc(
    keep: Annotated[int, typer.Option(
        callback=_at_least_one, help="Cortes más recientes que se conservan, al menos 1 (el que "
        "está en línea se conserva siempre).")] = 20,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Depura cortes viejos y los objetos que ya nadie usa."""
    from difusor.pipeline import Publisher

    cfg = config_mod.load(config)
    existing_state(cfg)
    with ledger_for(cfg) as ledger, progress("depurando") as bar:
        result = Publisher(cfg, ledger).gc(keep, progress=bar)
    out.print(f"Depurados {len(result.releases)} cortes y {result.objects} objetos "
              f"({result.freed / 1e6:.1f} MB liberados).")


@app.command()
def demo(
    fast: Annotated[bool, typer.Option(help="Un corte cada 5 segundos en vez de cada 10 minutos.")]
    = False,
    folder: Annotated[Path, typer.Option(help="Carpeta de la demostración (se recrea).")]
    = Path("demo-state"),
) -> None:
    """Todo el sistema en 127.0.0.1 con una autoridad simulada (datos sintéticos)."""
    from difusor.demo.runner import run_demo

    run_demo(folder, fast=fast, say=out.print)


@app.command("sftp-config")
def sftp_config(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Archivo donde escribir el bloque de sshd (p. ej. "
        "/etc/ssh/sshd_config.d/difusor-sftp.conf); por omisión, la salida estándar.")] = None,
    chroot: Annotated[Path | None, typer.Option(
        help="Raíz (chroot) de la cuenta SFTP; la autoridad sube a CHROOT/entrada "
        "[por omisión /srv/difusor/sftp].")] = None,
    apply: Annotated[bool, typer.Option(
        "--apply", help="Crear carpetas, permisos y llaves (requiere root).")] = False,
    create_user: Annotated[bool, typer.Option(
        "--create-user", help="Con --apply: crear la cuenta de la autoridad si no existe.")] = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Configura OpenSSH (internal-sftp encerrado en un chroot) como receptor de producción."""
    from difusor.receive.openssh import SftpAccount

    cfg = config_mod.load(config)
    account = SftpAccount.from_config(cfg, chroot=chroot)
    block = account.match_block()
    if apply:
        for step in account.apply(create_user=create_user):
            err.print(f"hecho: {step.shell}", markup=False)
    if output is None:
        out.print(block, markup=False, end="")
    else:
        try:
            output.write_text(block, encoding="utf-8")
        except OSError as exc:
            raise DifusorError(f"no puedo escribir {output}: {exc.strerror}") from None
    err.print(account.instructions(snippet=output, applied=apply, create_user=create_user),
              markup=False, end="", soft_wrap=True)


@app.command("nginx-config")
def nginx_config(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Archivo donde escribir la configuración (p. ej. "
        "/etc/nginx/conf.d/difusor.conf); por omisión, la salida estándar.")] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Configuración de nginx con la misma política de encabezados que el servidor embebido."""
    from difusor.serve.nginxconf import NginxConfig

    cfg = config_mod.load(config)
    conf = NginxConfig.from_config(cfg)
    text = conf.render()
    if output is None:
        sys.stdout.write(text)  # verbatim: no console markup, emoji codes or wrapping
        sys.stdout.flush()
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise DifusorError(f"no puedo escribir {output}: {exc.strerror}") from None
    err.print(conf.instructions(output), markup=False, end="", soft_wrap=True)


@app.command()
def purge(
    paths: Annotated[list[str] | None, typer.Argument(
        metavar="PATH", help="Rutas del sitio (json/main.json) o URL completas; sin rutas: lo "
        "que cambió en el corte en línea, y main.json.")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Purgar todo el sitio en cada CDN.")]
    = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Purga las CDN configuradas y comprueba en el borde que ya sirven los bytes nuevos."""
    from difusor.publish.cdn import PurgeError, manual_purge

    cfg = config_mod.load(config)
    if not cfg.cdn:
        raise DifusorError(f"{config} no tiene ninguna sección [[cdn]] (ver docs/cdn.md)")
    if everything and paths:
        raise DifusorError("usa rutas o --all, no ambas")
    with ledger_for(cfg) as ledger:
        report = manual_purge(cfg, ledger, paths or [], everything=everything)
    for line in report.lines():
        out.print(line, markup=False)
    if not report.ok:
        failed = [c.cdn for c in report.cdns if not c.ok]
        raise PurgeError(f"la purga no quedó comprobada en: {', '.join(failed)} (detalle arriba "
                         "y en la bitácora)")


@app.command()
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


NowOpt = Annotated[str | None, typer.Option(
    "--now", envvar="DIFUSOR_NOW", hidden=True,
    help="Momento fijo (ISO 8601) en lugar del reloj: solo para simulacros y pruebas.")]


@app.command("uptime")
def uptime_command(
    month: Annotated[str | None, typer.Option(
        help="Mes AAAA-MM; por omisión, el mes en curso en la zona horaria del sitio.")] = None,
    since: Annotated[str | None, typer.Option(
        "--from", help="Inicio de otro periodo (en vez de --month): dd/mm/aaaa HH:MM o ISO "
        "8601.")] = None,
    until: Annotated[str | None, typer.Option(
        "--to", help="Fin de ese periodo, dd/mm/aaaa HH:MM o ISO 8601 (por omisión, ahora).")]
    = None,
    vantage: Annotated[str | None, typer.Option(
        help="Solo los sondeos de este punto (local o el nombre de un agente remoto).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Salida JSON.")] = False,
    now: NowOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Disponibilidad medida en tiempo, por objetivo y del sitio público, contra 99.9 %."""
    from difusor.monitor.report_cli import moment_from, uptime_table
    from difusor.monitor.uptime import month_range, report

    cfg = config_mod.load(config)
    zone = ZoneInfo(cfg.site.timezone)
    moment = moment_from(now, zone)
    if since is not None or until is not None:
        if month is not None or since is None:
            raise DifusorError("usa --month, o --from (con --to opcional), no ambos")
        start = moment_from(since, zone, "--from")
        end = moment_from(until, zone, "--to") if until else moment
    else:
        start, end = month_range(month, zone, moment)
    with ledger_for(cfg) as ledger:
        rep = report(cfg, ledger, start=start, end=end, vantage=vantage, now=moment)
    if as_json:
        out.print_json(json.dumps(rep.to_dict(), ensure_ascii=False))
        return
    title, table, outages = uptime_table(rep, zone)
    out.print(title, markup=False)
    # Redirected to a file or a pipe: as wide as it needs (no cells wrapped at 80 columns).
    (out if out.is_terminal else Console(highlight=False, width=200)).print(table)
    if outages:
        out.print("Caídas del sitio público:", markup=False)
        for line in outages:
            out.print(line, markup=False)


@app.command("incidents")
def incidents_command(
    open_only: Annotated[bool, typer.Option("--open", help="Solo los que no están resueltos.")]
    = False,
    as_json: Annotated[bool, typer.Option("--json", help="Salida JSON.")] = False,
    now: NowOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Los incidentes con todo lo que pide la memoria técnica (II.4.a), del más reciente."""
    from difusor.monitor.report_cli import incident_doc, incident_lines, moment_from

    cfg = config_mod.load(config)
    moment = moment_from(now, ZoneInfo(cfg.site.timezone))
    with ledger_for(cfg) as ledger:
        docs = [incident_doc(row, moment) for row in ledger.incidents(open_only=open_only)]
    if as_json:
        out.print_json(json.dumps({"incidentes": docs}, ensure_ascii=False))
        return
    if not docs:
        out.print("No hay incidentes registrados." if not open_only else "No hay incidentes "
                  "abiertos.")
        return
    zone = ZoneInfo(cfg.site.timezone)
    for n, doc in enumerate(docs):
        if n:
            out.print()
        for line in incident_lines(doc, zone):
            out.print(line, markup=False)


@app.command("incident")
def incident_command(
    number: Annotated[int, typer.Argument(metavar="N", help="Número del incidente.")],
    cause: Annotated[str | None, typer.Option(
        help="Causa raíz (lo pasa a «identificado» si no está resuelto).")] = None,
    impact: Annotated[str | None, typer.Option(
        help="Impacto: peticiones y visitantes afectados, errores servidos.")] = None,
    measure: Annotated[list[str] | None, typer.Option(
        help="Medida tomada (repetible); se agrega con la hora y «operador».")] = None,
    state: Annotated[str | None, typer.Option(
        help="investigating|identified|monitoring|resolved (o investigando, identificado, "
        "en-observacion, resuelto).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Salida JSON.")] = False,
    now: NowOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Muestra un incidente y registra su causa, impacto, medidas o estado."""
    from difusor.monitor.report_cli import edit_incident, incident_doc, incident_lines, moment_from

    cfg = config_mod.load(config)
    moment = moment_from(now, ZoneInfo(cfg.site.timezone))
    with ledger_for(cfg) as ledger:
        row = edit_incident(ledger, number, cause=cause, impact=impact, measures=measure or [],
                            state=state, now=moment)
    doc = incident_doc(row, moment)
    if as_json:
        out.print_json(json.dumps(doc, ensure_ascii=False))
        return
    if any(v is not None for v in (cause, impact, state)) or measure:
        out.print(f"Incidente n.º {number} actualizado.")
    for line in incident_lines(doc, ZoneInfo(cfg.site.timezone)):
        out.print(line, markup=False)


@app.command("takedown")
def takedown_command(
    yes: Annotated[bool, typer.Option("--yes", help="Confirmar el retiro definitivo.")] = False,
    now: NowOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Retiro final del sitio; rechazado antes del fin de la operación más su conservación (I.2)."""
    from difusor.monitor.report_cli import moment_from
    from difusor.monitor.retention import check_takedown, takedown

    cfg = config_mod.load(config)
    moment = moment_from(now, ZoneInfo(cfg.site.timezone))
    check_takedown(cfg, moment)
    if not yes:
        raise DifusorError("el retiro deja de publicar el sitio (los servidores responden 503); "
                           "confírmalo con --yes")
    with ledger_for(cfg) as ledger:
        done = takedown(cfg, ledger, moment)
    what = f"el corte {done.release_id} ya no se sirve" if done.release_id else "no había corte"
    out.print(f"Sitio retirado: {what}; /_difusor/health responde 503.", markup=False)
    if done.workers is None:
        out.print("Aviso: algún proceso del servidor no confirmó el cambio en 2 s.", markup=False)
    if done.elsewhere:
        out.print(f"Aviso: siguen con una copia {', '.join(done.elsewhere)}: retíralos con su "
                  "propio procedimiento (docs/disponibilidad.md).", markup=False)
    out.print("Detén «difusor run» si sigue en marcha: un paquete nuevo volvería a publicarse.",
              markup=False)


@simulate_app.command("packages")
def simulate_packages(
    directory: Annotated[Path, typer.Argument(help="Carpeta donde escribir los paquetes.")],
    count: Annotated[int, typer.Option(help="Cuántos cortes.")] = 6,
    casillas: Annotated[int, typer.Option(help="Casillas de la elección sintética.")] = 24,
    fmt: Annotated[str, typer.Option("--format", help="zip o tar.gz.")] = "zip",
    sidecar: Annotated[bool, typer.Option(help="Escribir NOMBRE.sha256 junto a cada paquete.")]
    = True,
) -> None:
    """Escribe la serie de paquetes de la autoridad sintética: uno completo y luego incrementales."""
    from difusor.demo.election import SyntheticElection
    from difusor.demo.packages import write_package

    if fmt not in ("zip", "tar.gz"):
        raise DifusorError("--format debe ser zip o tar.gz")
    for n, corte in enumerate(SyntheticElection(casillas=casillas).cortes(count)):
        path = write_package(corte, directory, kind="full" if n == 0 else "incremental", fmt=fmt,
                             sidecar=sidecar)
        out.print(str(path))


def main() -> None:
    try:
        code = clispanish.command(app)(standalone_mode=False, prog_name="difusor")
    except DifusorError as exc:
        err.print(f"difusor: {exc.message}", markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except _HelpShown:
        sys.exit(0)
    except _UsageError as exc:
        err.print(f"difusor: uso incorrecto: {clispanish.usage_message(exc)}", markup=False,
                  soft_wrap=True)
        sys.exit(64)
    except (typer.Abort, KeyboardInterrupt):
        err.print("difusor: interrumpido", markup=False)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
