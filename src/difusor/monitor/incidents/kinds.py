"""What incidents there are, their states and severities, with their Spanish labels."""

from __future__ import annotations

# kind → (Spanish label, default severity)
KINDS: dict[str, tuple[str, str]] = {
    "outage": ("caída", "critical"),
    "degraded": ("servicio degradado", "minor"),
    "stale": ("corte desactualizado", "major"),
    "integrity": ("integridad", "critical"),
    "header": ("encabezado incorrecto", "major"),
    "tls": ("certificado TLS", "critical"),
    "refused": ("paquete rechazado", "minor"),
    "attack": ("ataque", "major"),
    "purge": ("falla de purga", "major"),
    "origin_out": ("origen fuera de rotación", "major"),
    "authority_delay": ("retraso de la autoridad", "warning"),
    "disk": ("disco casi lleno", "major"),
}
STATES = {"investigating": "investigando", "identified": "identificado",
          "monitoring": "en observación", "resolved": "resuelto"}
SEVERITIES = {"critical": "crítica", "major": "mayor", "minor": "menor", "warning": "aviso",
              "info": "informativa"}
SEVERITY_RANK = ("info", "warning", "minor", "major", "critical")  # least to most severe
