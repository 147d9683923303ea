"""Análisis y conclusiones (II.4.c): findings as Spanish sentences, each with the figure it rests
on, and the recommendations they suggest. Everything here reads the document's figures (which
come from ``summary``, ``uptime`` and ``incidents``); nothing is measured again."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from difusor.moments import duration
from difusor.report.numbers import grouped


def _n(value: float) -> str:
    return grouped(value)


def _hm(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%d/%m/%Y %H:%M")


def findings(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """``hallazgos``: [{clave, texto, cifra}]."""
    out: list[dict[str, Any]] = []

    def add(key: str, text: str, figure: Any) -> None:
        out.append({"clave": key, "texto": text, "cifra": figure})

    v, s = doc["visitas"], doc["resumen"]
    if not v["hits"]:
        add("visitas", "No se registraron visitas en el periodo: no hay registros de acceso "
            "ingeridos para estas fechas.", 0)
    else:
        add("visitas", f"Se registraron {_n(s['visitantes_unicos'])} visitantes únicos "
            f"(visitantes-día), {_n(s['visitantes_totales'])} visitas y "
            f"{_n(s['paginas_vistas'])} páginas vistas.", s["visitantes_unicos"])
        _traffic(v, doc["cronologia"]["cortes"], add)
    _simulacros(doc.get("simulacros") or [], add)
    _edge(v, add)
    _publication(doc["cronologia"]["cortes"], add)
    _security(doc["seguridad"], add)
    _availability(doc["disponibilidad"]["sitio_publico"], add)
    _incidents(doc["incidentes"], add)
    return out


def _simulacros(drills: list[dict[str, Any]], add: Any) -> None:
    took_part = [d for d in drills if d["cortes_publicados"]]
    if not took_part:
        return
    dates = ", ".join(datetime.fromisoformat(d["desde"]).strftime("%d/%m/%Y") for d in took_part)
    cortes = sum(d["cortes_publicados"] for d in took_part)
    plural = "el simulacro" if len(took_part) == 1 else "los simulacros"
    add("simulacros", f"El difusor participó en {plural} del {dates}: publicó {_n(cortes)} "
        f"cortes en su sitio de prueba ({took_part[0]['url']}).", len(took_part))


def _peak(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    best = max(points, key=lambda p: (p["visitors"], p["hits"]), default=None)
    return best if best and best["visitors"] else None


def _traffic(v: dict[str, Any], cortes: list[dict[str, Any]], add: Any) -> None:
    ten, hour = v["series_10min"], v["series_hour"]
    if (p := _peak(ten)) is not None:
        add("pico_10min", f"El mayor número de visitantes en 10 minutos fue {_n(p['visitors'])}, "
            f"a partir de las {_hm(p['t'])}.", p["visitors"])
    if (p := _peak(hour)) is not None:
        add("hora_pico", f"La hora de mayor afluencia empezó a las {_hm(p['t'])}, con "
            f"{_n(p['visitors'])} visitantes y {_n(p['hits'])} peticiones.", p["visitors"])
    live = [(datetime.fromisoformat(c["en_linea"]), c["corte"]) for c in cortes if c["en_linea"]]
    if not live or not ten:
        return
    points = [(datetime.fromisoformat(p["t"]), p["hits"]) for p in ten]
    per_corte = Counter[str]()
    after = []
    for i, (at, corte) in enumerate(live):
        stop = live[i + 1][0] if i + 1 < len(live) else None
        per_corte[corte] += sum(h for t, h in points if t >= at and (stop is None or t < stop))
        following = [h for t, h in points if t >= at][:1]
        after += following
    corte, hits = per_corte.most_common(1)[0]
    add("corte_mas_consultado", f"El corte {corte} fue el más consultado mientras estuvo en "
        f"línea: {_n(hits)} peticiones.", hits)
    average = sum(h for _t, h in points) / len(points)
    if after and average:
        ratio = round(sum(after) / len(after) / average, 2)
        add("cadencia", f"En los 10 minutos en que se publica un corte, el tráfico fue {ratio:g} "
            "veces el promedio de 10 minutos del periodo: "
            + ("las consultas siguen la cadencia de los cortes." if ratio >= 1.2 else
               "las consultas no muestran picos marcados con cada corte."), ratio)


def _edge(v: dict[str, Any], add: Any) -> None:
    sources = v.get("sources") or []
    edge = sum(x["hits"] for x in sources if x["edge"])
    total = sum(x["hits"] for x in sources)
    if not total:
        return
    if not edge:
        add("cdn", "No hay registros del borde (CDN) ingeridos: todas las peticiones medidas "
            "son las que llegaron al origen.", None)
        return
    share = round(100 * edge / total, 2)
    add("cdn", f"La CDN recibió el {share:g} % de las peticiones registradas "
        f"({_n(edge)} de {_n(total)}); el resto llegó al origen.", share)


def _publication(cortes: list[dict[str, Any]], add: Any) -> None:
    timed = [c for c in cortes if c["retraso_s"] is not None]
    if not timed:
        add("publicacion", "No se publicó ningún corte en el periodo.", 0)
        return
    slow = max(timed, key=lambda c: c["retraso_s"])
    lags = sorted(c["retraso_s"] for c in timed)
    median = lags[(len(lags) - 1) // 2]
    why = (f" ({slow['archivos']} archivos, {slow['cambiados']} cambiados)"
           if slow["cambiados"] is not None else f" ({slow['archivos']} archivos)")
    add("publicacion_mas_lenta", f"La publicación más lenta fue la del corte {slow['corte']}: "
        f"{slow['retraso_s']:g} s de recibido a en línea{why}; la mediana fue {median:g} s.",
        slow["retraso_s"])


def _security(sec: dict[str, Any], add: Any) -> None:
    attacks = sec["ataques"]
    if not attacks:
        add("ataques", "No se detectaron ataques en el periodo.", 0)
        return
    peak = max((a["pico_rps"] or 0) for a in attacks)
    refused = sum(a["rechazadas"] or 0 for a in attacks)
    add("ataques", f"Se detectaron {len(attacks)} ataque(s), con un pico de {_n(peak)} "
        f"peticiones/s; el escudo rechazó {_n(refused)} peticiones y el sitio atendió "
        f"{_n(sec['legitimas_durante_ataques'])} peticiones legítimas mientras tanto.",
        len(attacks))


def _availability(site: dict[str, Any], add: Any) -> None:
    pct = site["disponibilidad_pct"]
    if pct is None:
        add("disponibilidad", "No hay sondeos en el periodo: la disponibilidad no se midió.",
            None)
        return
    budget = site["presupuesto_s"]
    used = round(100 * site["caido_s"] / budget, 2) if budget else None
    add("disponibilidad", f"El sitio público estuvo disponible el {pct:g} % del tiempo medido "
        f"(peor caso, contando lo no medido como caída: {site['disponibilidad_peor_caso_pct']:g} "
        f"%); sin medición: {duration(site['desconocido_s'])}.", pct)
    if used is not None:
        add("presupuesto", f"Las caídas ({duration(site['caido_s'])}) usaron el {used:g} % del "
            f"presupuesto de indisponibilidad de 99.9 % ({duration(budget)}).", used)


def _incidents(incidents: list[dict[str, Any]], add: Any) -> None:
    if not incidents:
        add("incidentes", "No se registraron incidentes en el periodo.", 0)
        return
    kinds = Counter(i["categoria"] for i in incidents)
    listed = ", ".join(f"{n} de {k}" for k, n in kinds.most_common())
    add("incidentes", f"Se registraron {len(incidents)} incidente(s): {listed}.", len(incidents))


def recommendations(doc: dict[str, Any], found: list[dict[str, Any]]) -> list[dict[str, str]]:
    """``recomendaciones``: [{clave, texto}], each suggested by a finding's figure."""
    fig = {f["clave"]: f["cifra"] for f in found}
    out: list[dict[str, str]] = []

    def add(key: str, text: str) -> None:
        out.append({"clave": key, "texto": text})

    if "cdn" in fig and fig["cdn"] is None:
        add("registros_cdn", "Ingerir también los registros del borde (CDN) para medir el "
            "tráfico que la CDN absorbió y el que llegó al origen.")
    elif isinstance(fig.get("cdn"), float) and fig["cdn"] < 50:
        add("cache_dirigida", "El origen atendió la mayor parte de las consultas: conviene una "
            "caché dirigida en la CDN para json/ y los archivos del corte, con un tiempo de vida "
            "menor que la cadencia de los cortes.")
    if (fig.get("cadencia") or 0) >= 2:
        add("picos_por_corte", "El tráfico se concentra al publicar cada corte: preparar la "
            "capacidad y la purga de la CDN para esos minutos, no para el promedio.")
    if (fig.get("presupuesto") or 0) >= 50:
        add("redundancia", "Las caídas consumieron más de la mitad del presupuesto de 99.9 %: "
            "agregar un segundo origen o proveedor y revisar la causa de cada caída.")
    site = doc["disponibilidad"]["sitio_publico"]
    if site["disponibilidad_pct"] is not None and (site["cobertura_pct"] or 0) < 99:
        add("cobertura", "Parte del periodo no tuvo sondeos: mantener el monitor y al menos un "
            "sondeo remoto durante toda la operación.")
    lags = doc["resumen"]["retraso_publicacion_s"]
    if lags["max"] is not None and lags["p50"] and lags["max"] > 3 * lags["p50"]:
        add("publicacion", "Una publicación tardó más del triple de la mediana: revisar el "
            "tamaño de ese paquete y la activación en los orígenes.")
    if fig.get("ataques"):
        add("escudo", "Conservar los umbrales del escudo que contuvieron los ataques y revisar "
            "las fuentes que más peticiones enviaron.")
    pending = [i["id"] for i in doc["incidentes"] if i["causa_sugerida"] or i["en_curso"]]
    if pending:
        add("causas", "Confirmar la causa raíz o cerrar los incidentes n.º "
            + ", ".join(map(str, pending)) + " con «difusor incident N --cause …».")
    if not out:
        add("mantener", "Los indicadores no sugieren cambios: mantener la configuración y los "
            "procedimientos de esta operación.")
    return out
