"""A first guess at an incident's root cause, in Spanish, from the evidence and the ledger."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from difusor.ledger import Ledger
from difusor.monitor.incidents.clock import local

_ERRORS = {
    "refused": "el servidor no responde (¿proceso detenido?)",
    "timeout": "el servidor no contesta a tiempo (¿saturado, colgado o la red?)",
    "reset": "la conexión se corta (¿el servidor se reinicia o un balanceador la cierra?)",
    "dns": "el nombre no se resuelve (DNS)",
    "tls": "falla la negociación TLS (¿certificado vencido o equivocado?)",
    "http_5xx": "el servidor responde con errores 5xx",
    "http_status": "main.json no está disponible en el servidor",
    "protocol": "el servidor devuelve respuestas HTTP inválidas",
}


def suggest_cause(kind: str, evidence: dict[str, Any], ledger: Ledger, *, target: str | None,
                  since: str, zone: tzinfo | None = None) -> str:
    """A first guess at the root cause from what the probes saw and the ledger shows."""
    if kind == "outage":
        cause = _ERRORS.get(str(evidence.get("error")), "el servidor no responde")
        restarts = ledger.events_since(kinds=("service_restarted",), since=since)
        if restarts:
            cause += f"; el supervisor lo reinició {len(restarts)} vez/veces"
        return cause
    if kind == "stale":
        return _stale_cause(evidence, ledger, target=target, zone=zone)
    if kind == "integrity":
        paths = evidence.get("mismatched") or []
        where = f" ({', '.join('/' + p for p in paths[:3])})" if paths else ""
        return ("los bytes servidos no coinciden con el manifiesto del corte en línea" + where
                + ": ¿archivo alterado en disco, un origen o una CDN que sirve otra cosa?")
    if kind == "header":
        return ("Cache-Control de main.json no es el que fija la convocatoria: ¿una regla de la "
                "CDN o del proxy lo cambia?")
    if kind == "tls":
        days = evidence.get("tls_days_left")
        if days is not None:
            return f"el certificado TLS vence en {float(days):.1f} días: renovarlo"
        return "el certificado TLS no es válido (¿vencido o de otro nombre?)"
    if kind == "degraded":
        return "respuestas lentas: ¿carga alta, red o disco del servidor?"
    return ""


def _stale_cause(evidence: dict[str, Any], ledger: Ledger, *, target: str | None,
                 zone: tzinfo | None) -> str:
    live = evidence.get("expected_release")
    served = evidence.get("served_release") or "uno anterior"
    activation = next((a for a in ledger.activations(50) if a.release_id == live), None)
    when = f" a las {local(activation.at, zone)}" if activation else ""
    base = (f"la autoridad sí entregó: el corte {live} se aceptó y activó{when}, pero "
            f"«{target}» sigue sirviendo {served}")
    if activation is not None:
        late = [e for e in ledger.events_since(kinds=("served_late", "served"),
                                                since=activation.at)
                if e["release_id"] == live]
        if any(e["kind"] == "served_late" for e in late):
            return base + " (el servidor no cambió de corte al activarlo: ver «served_late»)"
        edge = ledger.events_since(kinds=("purge_failed", "edge_stale"), since=activation.at)
        if edge:
            return base + f" (la CDN: {edge[-1]['message']})"
        out = ledger.events_since(kinds=("origin_out",), since=activation.at)
        if out:
            return base + f" (un origen quedó fuera: {out[-1]['message']})"
    return base + " (¿el servidor, un origen o la CDN no recibió el cambio?)"


def authority_cause(ledger: Ledger, since: str, zone: tzinfo | None = None) -> str:
    """Why no new corte went live since ``since``: nothing arrived, refused, or not published."""
    packages = ledger.packages_since(since)
    if not packages:
        return f"la autoridad no ha enviado paquetes desde {local(since, zone)}"
    refused = [p for p in packages if p["state"] in ("refused", "failed")]
    pending = [p for p in packages if p["state"] not in ("refused", "failed", "activated",
                                                           "duplicate")]
    if pending:
        p = pending[-1]
        return (f"llegó el paquete {p['name']} ({p['state']}) pero no se ha publicado: "
                "¿el publicador está detenido?")
    if refused:
        p = refused[-1]
        return (f"llegaron {len(packages)} paquete(s) pero se rechazaron; el último, "
                f"{p['name']}: {p['reason'] or p['state']}")
    return (f"llegaron {len(packages)} paquete(s) repetidos (mismo corte): la autoridad no ha "
            "generado uno nuevo")
