"""Run every item in the convocatoria's order and record the result in the ledger."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

from difusor.compliance import edge, records, transfer, web
from difusor.compliance.outcome import CheckResult, Outcome, now
from difusor.config import Config
from difusor.ledger import Ledger


def run_checks(cfg: Config, ledger: Ledger, *, sftp_bytes: int = 200 * 10**6,
               receiver: Config | None = None,
               progress: Callable[[str], None] = lambda _line: None) -> CheckResult:
    """``cfg``: the site checked (its view with ``[sites]``); ``receiver``: the file itself,
    whose ``[sftp]``/``[dropfolder]`` receive for every site (default: ``cfg``)."""
    result = CheckResult(site=cfg.site_name or cfg.site.name, started=now())
    steps: list[tuple[str, Callable[[], list[Outcome] | Outcome]]] = [
        ("disco", lambda: transfer.disk(cfg)),
        ("sitio y encabezado de main.json", lambda: web.header_and_web(cfg, ledger)),
        ("HTTPS", lambda: web.https(cfg)),
        ("purga de la CDN", lambda: edge.cdn_purge(cfg)),
        ("registro de visitas", lambda: records.visits(cfg)),
        ("escudo", lambda: records.shield(cfg)),
        ("monitor", lambda: records.monitor(cfg, ledger)),
        ("disponibilidad", lambda: records.availability(cfg, ledger)),
        # Last: the longest, and the one that loads the machine (a test file through the
        # receiver) — the others measure a quiet site.
        ("SFTP (llave y velocidad)", lambda: transfer.sftp(receiver or cfg, sftp_bytes)),
    ]
    for label, step in steps:
        progress(f"revisando {label}…")
        try:
            found = step()
        except Exception as exc:  # one item's surprise must not hide the others' results
            found = Outcome.fail("error", "—", f"revisión de {label}",
                                 f"falla inesperada al revisar {label}: {exc!r}")
        for item in found if isinstance(found, list) else [found]:
            result.items.append(item)
    result.finished = now()
    counts = result.counts()
    ledger.event("check", f"revisión contra la convocatoria: {counts['ok']} cumplen, "
                 f"{counts['fail']} no cumplen, {counts['unverifiable']} no verificables",
                 detail={"site": result.site, "passed": result.passed,
                         "items": [asdict(i) for i in result.items]})
    return result
