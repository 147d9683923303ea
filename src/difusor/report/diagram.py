"""The service as configured, drawn (plain SVG) and listed (components with versions).

Columns follow the data (docs/arquitectura.md): recepción → publicación → orígenes → CDN →
público, and the monitor's band underneath (its vantage points → what it probes). Everything
comes from the configuration — receivers enabled, ``origin_settings`` (the embedded server
always first), ``[[cdn]]``, ``monitor.service.targets`` — so the drawing is what runs, not what
someone remembered. Deterministic: fixed geometry, text wrapped by character count, no clock.
"""

from __future__ import annotations

import contextlib
import itertools
import platform
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from difusor.config import Config, OriginBase
from difusor.monitor.service import targets as monitor_targets
from difusor.publish.origins import origin_settings
from difusor.report.charts import FONT, esc

NAME = "diagrama-servicio"
TITLE = "Arquitectura del servicio"
BOX_W, GAP, PAD, LINE, HEAD = 160, 24, 14, 14, 18  # geometry, in SVG user units
WRAP, TITLE_WRAP = 24, 19  # characters per line in a box this wide (11 px; 12 px bold)
COLOURS = {"recepción": "#e3f2fd", "publicación": "#ede7f6", "origen": "#e8f5e9",
           "cdn": "#fff3e0", "público": "#fce4ec", "monitor": "#f5f5f5"}


@dataclass(frozen=True)
class Box:
    title: tuple[str, ...]  # bold lines
    lines: tuple[str, ...]
    kind: str

    @property
    def height(self) -> int:
        return HEAD + 8 + LINE * (len(self.title) - 1 + len(self.lines))


def _wrap(text: str, width: int = WRAP) -> list[str]:
    """Break a detail at WRAP characters: after a space, else a / - : or . (in that order of
    preference), else anywhere — so an address keeps its host together when it can."""
    out: list[str] = []
    while len(text) > width:
        cut = width
        for ch in " /-:.":
            at = text.rfind(ch, width // 2, width)
            if at >= 0:
                cut = at + 1
                break
        out.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    return [*out, text] if text else out


def _box(title: str, *details: str, kind: str) -> Box:
    return Box(tuple(_wrap(title, TITLE_WRAP)),
               tuple(line for d in details if d for line in _wrap(d)), kind)


def _origin_detail(cfg: Config, o: OriginBase) -> list[str]:
    if o.kind == "local":
        scheme = "https" if cfg.web.tls_cert else "http"
        return ["servidor embebido", f"{scheme}://{cfg.web.listen}"]
    get = lambda key: str(getattr(o, key, "") or "")  # noqa: E731 (keys differ per kind)
    if o.kind == "ssh":
        user = f"{get('user')}@" if get("user") else ""
        return [f"ssh {user}{get('host')}:{get('port')}", f"carpeta {get('root')}", o.url]
    if o.kind == "nginx":
        return [f"nginx, carpeta {get('root')}", o.url]
    if o.kind == "s3":
        return [f"s3://{get('bucket')}/{get('prefix')}", get("endpoint_url"), o.url]
    return [o.kind, o.url]


def columns(cfg: Config) -> list[tuple[str, list[Box]]]:
    """The main band: (column header, boxes) from left to right."""
    receivers = []
    if cfg.sftp.enabled:
        receivers.append(_box("SFTP embebido", f"sftp://{cfg.sftp.user}@{cfg.sftp.listen}",
                              kind="recepción"))
    if cfg.dropfolder.dirs:
        receivers.append(_box("Carpeta vigilada", *cfg.dropfolder.dirs, kind="recepción"))
    if cfg.pull.url:
        receivers.append(_box("Descarga HTTPS", cfg.pull.url, f"cada {cfg.pull.interval:g} s",
                              kind="recepción"))
    if not receivers:
        receivers.append(_box("Sin receptor", "ninguno configurado", kind="recepción"))
    publisher = [_box("Publicador difusor", "valida, guarda y activa cada corte",
                      f"estado: {cfg.state.dir}", kind="publicación")]
    origins = [_box(f"Origen «{o.name}»", *_origin_detail(cfg, o), kind="origen")
                for o in origin_settings(cfg)]
    cdns = [_box(f"CDN «{c.label}»", c.kind, c.edge_url, kind="cdn") for c in cfg.cdn]
    # With [sites], each site is a public face of its own (prueba, oficial…).
    public = [_box(f"Sitio {e.role}", str(e.url), kind="público") for e in cfg.sites.values()] \
        or [_box("Público", cfg.site.url, kind="público")]
    out = [("Recepción", receivers), ("Publicación", publisher), ("Orígenes", origins)]
    if cdns:
        out.append(("CDN", cdns))
    return [*out, ("Público", public)]


def monitor_band(cfg: Config) -> tuple[list[Box], list[Box]]:
    """(vantage points, targets probed)."""
    m = cfg.monitor
    vantages = [_box("Monitor local", f"cada {m.interval:g} s; degradado > {m.degraded_ms:g} ms",
                     kind="monitor")]
    if m.listen:
        vantages.append(_box("Sondas remotas", f"reportan a {m.listen}", kind="monitor"))
    probed = [_box(f"Objetivo «{t.name}»", t.url, kind="monitor") for t in monitor_targets(cfg)]
    return vantages, probed


def _rect(x: float, y: float, box: Box) -> str:
    parts = [f'<rect x="{x:g}" y="{y:g}" width="{BOX_W}" height="{box.height}" rx="5" '
             f'fill="{COLOURS[box.kind]}" stroke="#555555"/>']
    for i, line in enumerate(box.title):
        parts.append(f'<text x="{x + 7:g}" y="{y + HEAD + LINE * i:g}" font-weight="bold" '
                     f'font-size="12">{esc(line)}</text>')
    below = y + HEAD + 6 + LINE * (len(box.title) - 1)
    for i, line in enumerate(box.lines):
        parts.append(f'<text x="{x + 7:g}" y="{below + LINE * (i + 1):g}" '
                     f'font-size="11">{esc(line)}</text>')
    return "".join(parts)


def _stack(boxes: list[Box], x: float, middle: float) -> list[tuple[float, float, Box]]:
    """Boxes one above the other, centred on ``middle``: (x, y, box)."""
    total = sum(b.height for b in boxes) + PAD * (len(boxes) - 1)
    y, placed = middle - total / 2, []
    for b in boxes:
        placed.append((x, y, b))
        y += b.height + PAD
    return placed


def _links(left: list[tuple[float, float, Box]], right: list[tuple[float, float, Box]],
           dashed: bool = False) -> list[str]:
    """Arrows from every box on the left to every box on the right, through one junction
    when both sides have several (n × m crossing lines would hide the drawing)."""
    style = ' stroke-dasharray="4 3"' if dashed else ""

    def line(x1: float, y1: float, x2: float, y2: float, arrow: bool) -> str:
        head = f' marker-end="url(#{NAME}-flecha)"' if arrow else ""
        return (f'<path d="M{x1:g} {y1:g} L{x2:g} {y2:g}" fill="none" stroke="#555555"'
                f"{style}{head}/>")

    starts = [(x + BOX_W, y + b.height / 2) for x, y, b in left]
    ends = [(x - 2, y + b.height / 2) for x, y, b in right]
    if len(starts) > 1 and len(ends) > 1:
        jx = (starts[0][0] + ends[0][0] + 2) / 2
        jy = sum(y for _, y in starts + ends) / (len(starts) + len(ends))
        return ([line(*s, jx, jy, False) for s in starts]
                + [line(jx, jy, *e, True) for e in ends])
    return [line(*s, *e, True) for s in starts for e in ends]


def service_diagram(cfg: Config) -> str:
    """The SVG drawing of the configured service."""
    main = columns(cfg)
    vantages, probed = monitor_band(cfg)
    main_h = max(sum(b.height for b in boxes) + PAD * (len(boxes) - 1) for _, boxes in main)
    low_h = max(sum(b.height for b in boxes) + PAD * (len(boxes) - 1)
                for boxes in (vantages, probed))
    width = PAD * 2 + len(main) * BOX_W + (len(main) - 1) * GAP
    top, low_top = 34, 34 + main_h + 50
    height = low_top + low_h + PAD
    body: list[str] = []
    placed: list[list[tuple[float, float, Box]]] = []
    for i, (header, boxes) in enumerate(main):
        x = PAD + i * (BOX_W + GAP)
        body.append(f'<text x="{x + BOX_W / 2:g}" y="20" text-anchor="middle" '
                    f'font-weight="bold" font-size="12">{esc(header)}</text>')
        placed.append(_stack(boxes, x, top + main_h / 2))
    for left, right in itertools.pairwise(placed):
        body.extend(_links(left, right))
    body.append(f'<text x="{PAD:g}" y="{low_top - 14:g}" font-weight="bold" font-size="12">'
                "Monitoreo (puntos de vista → objetivos sondeados)</text>")
    low_left = _stack(vantages, PAD, low_top + low_h / 2)
    low_right = _stack(probed, PAD + 2 * (BOX_W + GAP), low_top + low_h / 2)
    body.extend(_links(low_left, low_right, dashed=True))
    body.extend(_rect(x, y, b) for column in [*placed, low_left, low_right] for x, y, b in column)
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{NAME}" role="img" aria-label="{TITLE}" '
        f'width="482pt" height="{482 * height / width:.1f}pt" viewBox="0 0 {width:g} {height:g}" '
        f'font-family="{FONT}, sans-serif" fill="#222222">',
        f"<title>{TITLE}</title>",
        f'<defs><marker id="{NAME}-flecha" viewBox="0 0 10 10" refX="9" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto"><path d="M0 0 L10 5 L0 10 z" '
        'fill="#555555"/></marker></defs>',
        *body, "</svg>"]) + "\n"


# -- components ---------------------------------------------------------------------------------

def installed_versions() -> dict[str, str]:
    """Versions of what the service runs on, found on this machine (cheap: metadata, one
    ``nginx -v``). Missing ones are left out."""
    found = {"python": platform.python_version()}
    for dist in ("difusor", "granian", "duckdb", "asyncssh"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    try:
        done = subprocess.run(["nginx", "-v"], capture_output=True, text=True, timeout=5,
                              check=False)
        text = (done.stderr or done.stdout).strip()
        if done.returncode == 0 and "/" in text:
            found["nginx"] = text.rsplit("/", 1)[1].split()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return found


def _uses_nginx(cfg: Config) -> bool:
    """An nginx origin, or ``[nginx]`` set up for a public name (``difusor nginx-conf``)."""
    return any(o.kind == "nginx" for o in cfg.origins) or cfg.nginx.server_name != "_"


def components(cfg: Config, versions: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """``arquitectura.componentes``: [{nombre, tipo, detalle, version}]; ``versions`` (keys as
    in ``installed_versions``) replaces looking them up, for tests and reproducible builds."""
    v = dict(installed_versions() if versions is None else versions)
    rows = [("difusor", "programa", "recepción, publicación, servidor embebido y monitor",
             v.get("difusor", "")),
            ("Python", "entorno", platform.python_implementation(), v.get("python", ""))]
    if cfg.sftp.enabled:
        rows.append(("SFTP embebido (asyncssh)", "recepción",
                     f"sftp://{cfg.sftp.user}@{cfg.sftp.listen}", v.get("asyncssh", "")))
    if cfg.dropfolder.dirs:
        rows.append(("carpeta vigilada", "recepción", ", ".join(cfg.dropfolder.dirs), ""))
    if cfg.pull.url:
        rows.append(("descarga HTTPS", "recepción", cfg.pull.url, ""))
    for o in origin_settings(cfg):
        detail = "; ".join(part for part in _origin_detail(cfg, o) if part)
        version = v.get("granian", "") if o.kind == "local" else ""
        rows.append((f"origen «{o.name}»", f"origen ({o.kind})", detail, version))
    if _uses_nginx(cfg):
        rows.append(("nginx", "servidor web", f"server_name {cfg.nginx.server_name}",
                     v.get("nginx", "")))
    rows.extend((f"CDN «{c.label}»", f"CDN ({c.kind})", c.edge_url, "") for c in cfg.cdn)
    rows.append(("DuckDB", "analítica", "visitas desde los registros de acceso",
                 v.get("duckdb", "")))
    names = ", ".join(t.name for t in monitor_targets(cfg))
    rows.append(("monitor", "monitoreo", f"cada {cfg.monitor.interval:g} s: {names}", ""))
    if cfg.monitor.listen:
        rows.append(("API de sondas remotas", "monitoreo", cfg.monitor.listen, ""))
    return [{"nombre": n, "tipo": t, "detalle": d, "version": ver} for n, t, d, ver in rows]
