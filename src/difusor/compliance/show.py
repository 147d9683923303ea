"""The check for a person: lines for the terminal and one self-contained HTML page."""

from __future__ import annotations

from markupsafe import escape

from difusor.compliance.outcome import LABELS, MARKS, CheckResult
from difusor.config import Config

_COLOURS = {"ok": "#1b5e20", "fail": "#b71c1c", "unverifiable": "#8d6e00"}


def lines(result: CheckResult) -> list[str]:
    out = []
    for i in result.items:
        out.append(f"{MARKS[i.status]} {i.clause} {i.title}: {LABELS[i.status]}")
        out.append(f"    {i.evidence}")
    c = result.counts()
    out.append(f"{c['ok']} cumplen, {c['fail']} no cumplen, {c['unverifiable']} no verificables "
               "desde aquí" + ("" if result.passed else " — hay puntos por corregir"))
    return out


def html_page(result: CheckResult, cfg: Config) -> str:
    rows = "".join(
        f'<tr><td style="color:{_COLOURS[i.status]};font-weight:bold">{MARKS[i.status]} '
        f"{escape(LABELS[i.status])}</td><td>{escape(i.clause)}</td><td>{escape(i.title)}</td>"
        f"<td>{escape(i.evidence)}</td><td>{escape(i.at)}</td></tr>"
        for i in result.items)
    c = result.counts()
    return f"""<!DOCTYPE html>
<html lang="es-MX"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Revisión contra la convocatoria — {escape(cfg.site.name)}</title>
<style>body{{font-family:"DejaVu Sans",sans-serif;max-width:70rem;margin:1.5rem auto;
padding:0 1rem;font-size:10pt}}table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #ccc;padding:.3em .5em;vertical-align:top;text-align:left}}
th{{background:#0d3b66;color:#fff}}</style></head><body>
<h1>Revisión contra la convocatoria</h1>
<p>Sitio: <strong>{escape(cfg.site.name)}</strong> ({escape(str(cfg.site.url))}).
Del {escape(result.started)} al {escape(result.finished)} (UTC).
{c['ok']} cumplen, {c['fail']} no cumplen, {c['unverifiable']} no verificables desde aquí.</p>
<table><thead><tr><th>Resultado</th><th>Inciso</th><th>Requisito</th><th>Evidencia</th>
<th>Medido</th></tr></thead><tbody>{rows}</tbody></table>
<p>Generado por <code>difusor check</code>; el resultado queda en la bitácora del difusor.</p>
</body></html>
"""
