"""What the sections show beyond the document's plain fields: incident cards with every field
the convocatoria names (II.4.a), the methodology box, the staff list. Derived only from the
document dict — no figure is computed here, only arranged and labelled in Spanish."""

from __future__ import annotations

from typing import Any

from difusor.moments import stored

MISSING = "sin registrar"

# The fallback definitions, for a document without ``metodologia`` (that one wins: it is
# written beside the code that counts).
METHODOLOGY: dict[str, str] = {
    "Visitante único": "Una persona-día: la misma dirección IP con el mismo navegador "
    "(agente de usuario) en un mismo día local. Sin cookies no se puede unir a la misma persona "
    "de un día a otro, así que en periodos de varios días se suman visitantes-día.",
    "Visitantes totales": "Las visitas: cada llegada de un visitante; quien vuelve tras una "
    "pausa mayor que la duración de sesión configurada llega de nuevo.",
    "Páginas vistas": "Peticiones de documentos HTML respondidas con éxito; las vistas de la "
    "aplicación de una sola página (SPA) se cuentan aparte como «vistas».",
    "Tiempo en el sitio": "De la primera a la última petición de cada visita; una visita de una "
    "sola petición cuenta cero.",
    "Robots": "Agentes que se declaran robots o que se comportan como tales; se cuentan aparte "
    "y no entran en ninguna otra cifra.",
    "Disponibilidad": "Tiempo en que el sitio público respondió correctamente entre el tiempo "
    "medido; el peor caso cuenta como caído el tiempo sin medición.",
}


def _when(value: Any) -> str:
    return stored(value).isoformat() if value else ""


def detection(inc: dict[str, Any]) -> str:
    """Who or what noticed the incident, said in Spanish."""
    if inc.get("deteccion"):
        return str(inc["deteccion"])
    detail = inc.get("detalle") or {}
    source = str(detail.get("source") or detail.get("origen") or "")
    if detail.get("manual") or source in ("manual", "operator", "operador"):
        return "registrado por el operador (no lo vio el monitor)"
    if detail.get("vantage"):
        return f"sondeos del monitor desde «{detail['vantage']}»"
    if source.startswith("event:"):
        return f"bitácora del difusor (evento {source.removeprefix('event:')})"
    if inc.get("tipo") == "attack":
        return "detector del escudo"
    return MISSING


def impact_text(value: Any) -> str:
    if value in (None, "", {}, []):
        return MISSING
    if isinstance(value, dict):
        return "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in value.items())
    return str(value)


def timeline(inc: dict[str, Any]) -> list[dict[str, Any]]:
    """Start, each measure, end — or the incident's own ``linea_de_tiempo`` when it has one."""
    if inc.get("linea_de_tiempo"):
        return [{"momento": e.get("momento"), "texto": e.get("texto", "")}
                for e in inc["linea_de_tiempo"]]
    events = [{"momento": inc.get("inicio"), "texto": f"inicio ({detection(inc)})"}]
    for m in inc.get("medidas") or []:
        events.append({"momento": m.get("en"), "texto": f"[{m.get('por') or 'auto'}] "
                       f"{m.get('texto') or ''}".strip()})
    if inc.get("fin"):
        events.append({"momento": inc["fin"], "texto": "fin: servicio restablecido"})
    timed = sorted((e for e in events if e["momento"]), key=lambda e: _when(e["momento"]))
    return timed + [e for e in events if not e["momento"]]


def incident_card(inc: dict[str, Any]) -> dict[str, Any]:
    cause = inc.get("causa")
    if cause and inc.get("causa_sugerida"):
        cause = f"{cause} (sugerida por el monitor, por confirmar)"
    return {
        "id": inc.get("id"), "tipo": inc.get("tipo_texto") or inc.get("tipo") or MISSING,
        "titulo": inc.get("titulo") or None, "categoria": inc.get("categoria") or None,
        "severidad": inc.get("severidad_texto") or inc.get("severidad") or MISSING,
        "estado": inc.get("estado_texto") or inc.get("estado") or MISSING,
        "objetivo": inc.get("objetivo") or "—",
        "inicio": inc.get("inicio"), "fin": inc.get("fin"),
        "duracion_s": inc.get("duracion_s"), "en_curso": bool(inc.get("en_curso")),
        "causa": cause or MISSING, "impacto": impact_text(inc.get("impacto")),
        "impacto_cifras": impact_text(inc.get("impacto_cifras"))
        if inc.get("impacto_cifras") else None,
        "medidas": inc.get("medidas") or [], "deteccion": detection(inc),
        "linea_de_tiempo": timeline(inc),
    }


def methodology(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """The document's own definitions (``metodologia``, from the code that counts) when it has
    them; this module's short fallback otherwise."""
    given = doc.get("metodologia")
    if not given:
        return list(METHODOLOGY.items())
    if isinstance(given, dict):
        return [(str(k), str(v)) for k, v in given.items()]
    return [(str(e.get("termino", "")), str(e.get("definicion", ""))) for e in given]


def derive(doc: dict[str, Any]) -> dict[str, Any]:
    visits = doc.get("visitas") or {}
    geo = visits.get("geo") or {}
    incidents = doc.get("incidentes") or []
    return {
        "cards": [incident_card(i) for i in incidents],
        "metodologia": methodology(doc),
        "geo_used": bool(geo.get("country") or geo.get("state")),
        "has_visits": bool(visits.get("hits") or visits.get("unique_visitors")),
        "simulacros": [{**d, "retraso_p95": (d.get("retraso_publicacion_s") or {}).get("p95")}
                       for d in doc.get("simulacros") or []],
        "personal": doc.get("personal") or (doc.get("sitio") or {}).get("personal") or [],
    }
