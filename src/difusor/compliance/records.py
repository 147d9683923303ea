"""II.2.c and the watch: visits are recorded (a marked request reaches the access log and the
analytics ingest counts it), the shield is on with its limits, the monitor is probing (with a
remote vantage reporting), and the availability so far, with its coverage."""

from __future__ import annotations

import secrets
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from difusor.compliance.outcome import Outcome
from difusor.compliance.web import ca_file_for
from difusor.config import Config
from difusor.ledger import Ledger
from difusor.monitor.probe import make_client
from difusor.monitor.service import LOCAL
from difusor.monitor.uptime import report as uptime_report
from difusor.paths import StateLayout

VISITS = ("visits", "II.2.c", "Registro de visitas (visitantes, páginas, permanencia)")
SHIELD = ("shield", "II.2.a", "Protección contra ataques de denegación de servicio")
MONITOR = ("monitor", "II.2.a", "Monitoreo activo, con al menos un punto remoto")
AVAILABILITY = ("availability", "II.2.e", "Disponibilidad de 99.9 %")
LOG_WAIT = 5.0  # seconds for the marked line to reach the log (nginx flushes every second)
TARGET = 99.9


def _logs(cfg: Config) -> list[Path]:
    """The access logs analytics follows: the embedded server's and nginx's."""
    paths = [StateLayout(cfg.state_dir).access_log, cfg.nginx_access_log]
    return [p for p in dict.fromkeys(paths) if p.exists()] or paths[:1]


def visits(cfg: Config) -> Outcome:
    if not cfg.web.access_log and not cfg.analytics.sources:
        return Outcome.fail(*VISITS, "[web] access_log está apagado y no hay "
                            "[[analytics.sources]]: no se registra ninguna visita")
    marker = f"difusor-check/{secrets.token_hex(6)}"
    base = str(cfg.site.url).rstrip("/")
    url = base + "/json/main.json"
    try:
        with make_client(10.0, ca_file_for(cfg, base)) as http:
            status = http.get(url, headers={"User-Agent": marker}).status_code
    except httpx.HTTPError as exc:
        return Outcome.fail(*VISITS, f"la petición marcada a {url} falló: {exc}")
    found = _await_line(_logs(cfg), marker.encode())
    if found is None:
        shown = ", ".join(str(p) for p in _logs(cfg))
        return Outcome.fail(*VISITS, f"GET {url} ({status}) con user agent «{marker}» no "
                            f"apareció en {shown} en {LOG_WAIT:g} s")
    log, line = found
    counted = _ingest_alone(cfg, line)
    evidence = (f"GET {url} ({status}) marcada «{marker}»: escrita en {log}; la ingesta de "
                f"analítica la {'cuenta' if counted else 'NO cuenta'} como visita")
    live = "en vivo con «difusor run»" if cfg.analytics.enabled else "apagada en vivo"
    data = {"log": str(log), "marker": marker, "counted": counted}
    if not counted:
        return Outcome.fail(*VISITS, evidence, **data)
    return Outcome.ok(*VISITS, f"{evidence} (ingesta {live})", **data)


def _await_line(logs: list[Path], marker: bytes) -> tuple[Path, bytes] | None:
    deadline = time.monotonic() + LOG_WAIT
    start = {p: (p.stat().st_size if p.exists() else 0) for p in logs}
    while True:
        for p in logs:
            try:
                with p.open("rb") as f:
                    f.seek(max(0, start[p] - 4096))  # a rotation may have shrunk it: reread
                    for line in f.read().splitlines():
                        if marker in line:
                            return p, line
            except OSError:
                continue
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def _ingest_alone(cfg: Config, line: bytes) -> bool:
    """Ingest only the marked line into a scratch database (own agents counted, so it shows):
    the same parser and classifier the night uses, nothing added to the real statistics."""
    from difusor.analytics.ingest import ingest_files
    from difusor.config.site import StateSettings

    with tempfile.TemporaryDirectory(prefix="difusor-check-") as tmp:
        log = Path(tmp) / "access.log"
        log.write_bytes(line + b"\n")
        scratch = cfg.model_copy(update={
            "state": StateSettings(dir=str(Path(tmp) / "estado")),
            "analytics": cfg.analytics.model_copy(update={"own_agents": []})})
        StateLayout(scratch.state_dir).create()
        result = ingest_files(scratch, [log])
    return result.rows >= 1 and result.bad == 0


def shield(cfg: Config) -> Outcome:
    s = cfg.shield
    if not s.enabled:
        return Outcome.fail(*SHIELD, "[shield] enabled = false: el escudo está apagado")
    where = ["el servidor embebido"]
    if s.nginx_include:
        where.append(f"nginx ({s.nginx_include})")
    if s.nftables_set:
        where.append(f"nftables ({s.nftables_set})")
    if s.cloudflare.account_id:
        where.append("lista de Cloudflare")
    return Outcome.ok(*SHIELD, f"encendido; límites: {s.ip_rate:g} pet/s por IP, "
                      f"{s.net_rate:g} por red, {s.asn_rate:g} por ASN; bloqueo {s.ban_seconds:g} "
                      f"s (hasta {s.ban_max_seconds:g}); modo ataque sobre {s.attack_rate:g} "
                      f"pet/s; aplica en {', '.join(where)}", enforcers=where)


def monitor(cfg: Config, ledger: Ledger) -> Outcome:
    m = cfg.monitor
    if not m.enabled:
        return Outcome.fail(*MONITOR, "[monitor] enabled = false: nadie sondea el sitio")
    now = datetime.now(UTC)
    window_s = 3 * m.interval  # three rounds missed: the monitor is not probing
    recent = ledger.probes(since=(now - timedelta(hours=1)).isoformat(timespec="microseconds"))
    local = [r for r in recent if r["vantage"] == LOCAL
             and datetime.fromisoformat(r["at"]) >= now - timedelta(seconds=window_s)]
    last: dict[str, dict] = {}
    for r in recent:
        if r["vantage"] != LOCAL:
            last[r["vantage"]] = r
    # A remote agent reports at its own pace: fresh while within three of its own rounds.
    remote = sorted(v for v, r in last.items() if datetime.fromisoformat(r["at"]) >=
                    now - timedelta(seconds=3 * (r["interval_s"] or m.interval)))
    window = f"en los últimos {window_s:.0f} s"
    if not local:
        return Outcome.fail(*MONITOR, f"ningún sondeo local {window}: ¿está corriendo "
                            "«difusor run»?", remote=remote)
    said = f"{len(local)} sondeos locales {window}, el último {local[-1]['at']}"
    if not remote:
        return Outcome.fail(*MONITOR, f"{said}; ningún punto remoto ha reportado en sus "
                            "últimas tres rondas («difusor probe --report-to …» desde otra red)",
                            remote=remote, stale_remote=sorted(last))
    return Outcome.ok(*MONITOR, f"{said}; puntos remotos al día: {', '.join(remote)}",
                      remote=remote)


def availability(cfg: Config, ledger: Ledger) -> Outcome:
    now = datetime.now(UTC)
    start = (datetime.fromisoformat(cfg.operation.start) if cfg.operation.start
             else now - timedelta(days=30))
    if start > now:
        start = now - timedelta(days=30)
    site = uptime_report(cfg, ledger, start=start, end=now).site
    measured = site.up_seconds + site.down_seconds
    total = measured + site.unknown_seconds
    if not measured:
        return Outcome.unknown(*AVAILABILITY, "aún no hay sondeos con qué medirla")
    pct, worst = (site.ratio or 0) * 100, (site.worst_ratio or 0) * 100
    coverage = measured / total * 100 if total else 0.0
    evidence = (f"desde {start:%d/%m/%Y %H:%M} UTC: {pct:.3f} % del tiempo medido "
                f"({coverage:.1f} % del periodo con sondeos; {worst:.3f} % contando como caído "
                "lo no medido)")
    data = {"percent": round(pct, 4), "worst_percent": round(worst, 4),
            "coverage_percent": round(coverage, 2)}
    if pct < TARGET:
        return Outcome.fail(*AVAILABILITY, evidence, **data)
    return Outcome.ok(*AVAILABILITY, evidence, **data)
