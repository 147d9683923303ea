"""A hand-made memoria document following the contract in ``difusor.report`` (every key, with
plausible values), an «empty period» variant (no visits, no incidents, no attacks), two CSV
tables and simple SVG drawings standing in for the charts."""

from __future__ import annotations

from typing import Any

DRAWINGS = {k: f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 20" id="svg-{k}">'
               f'<rect width="100" height="20" fill="#cde"/><text x="4" y="14" '
               f'font-size="8">{k}</text></svg>'
            for k in ("visitas", "por_hora", "linea_de_tiempo", "retraso", "mapa", "diagrama")}


T = "2024-06-02T"


def _corte(n: int, hour: int) -> dict[str, Any]:
    return {"corte": f"PREP-{n:02d}", "hora_autoridad": f"{T}{hour}:00:00-06:00",
            "recibido": f"{T}{hour}:00:40-06:00", "en_linea": f"{T}{hour}:01:02-06:00",
            "verificado_borde": f"{T}{hour}:01:20-06:00", "retraso_s": 22.0,
            "retraso_borde_s": 40.0, "archivos": 1240, "cambiados": 318,
            "sha256": f"{n:02d}" + "ab3f" * 15 + "99", "verificaciones": 3}


def make_doc(*, empty: bool = False, draft: bool = False) -> dict[str, Any]:
    """A complete document (every key of the contract); ``empty``: no visits, no incidents."""
    doc: dict[str, Any] = {
        "version": 1, "generado": "2024-06-03T20:00:00-06:00", "borrador": draft,
        "periodo": {"desde": "2024-06-02T18:00:00-06:00", "hasta": "2024-06-03T20:00:00-06:00",
                    "zona": "America/Mexico_City", "origen": "operacion"},
        "sitio": {"nombre": "Resultados Irimbo", "autoridad": "Instituto Electoral de Irimbo",
                  "eleccion": "Proceso Electoral Local 2023-2024", "url": "https://prep.example.mx",
                  "urls": ["https://prep.example.mx", "https://www.prep.example.mx"], "logo": None},
        "resumen": {"disponibilidad_pct": 99.9731, "disponibilidad_peor_caso_pct": 99.91,
                    "desconocido_s": 42.0, "cortes_recibidos": 3, "cortes_publicados": 3,
                    "paquetes_rechazados": 1,
                    "retraso_publicacion_s": {"p50": 22.0, "p95": 31.0, "max": 33.0},
                    "retraso_borde_s": {"p50": 40.0, "p95": 55.0, "max": 61.0},
                    "visitantes_totales": 18342, "visitantes_unicos": 12045,
                    "paginas_vistas": 90211, "vistas": 40122, "tiempo_promedio_s": 312.5,
                    "tiempo_mediana_s": 190.0,
                    "incidentes_por_severidad": {"critical": 1, "minor": 1},
                    "ataques_contenidos": 1},
        "arquitectura": {"componentes": [
            {"nombre": "difusor", "tipo": "publicador", "detalle": "recepción SFTP", "version": "0.9"},
            {"nombre": "nginx", "tipo": "origen", "detalle": "origen-1", "version": "1.22.1"},
            {"nombre": "Cloudflare", "tipo": "CDN", "detalle": "purga por API", "version": "—"}]},
        "cronologia": {
            "hitos": [{"momento": f"{T}18:00:00-06:00", "texto": "apertura de la publicación"},
                      {"momento": "2024-06-03T20:00:00-06:00", "texto": "cierre"}],
            "cortes": [_corte(1, 20), _corte(2, 21), _corte(3, 22)],
            "rechazados": [{"paquete": "PREP-x.zip", "recibido": f"{T}20:30:00-06:00",
                            "codigo": "checksum", "motivo": "la suma SHA-256 no coincide"}]},
        "disponibilidad": {
            "desde": "2024-06-02T18:00:00-06:00", "hasta": "2024-06-03T20:00:00-06:00",
            "medido_hasta": "2024-06-03T20:00:00-06:00", "meta_pct": 99.9,
            "sitio_publico": {"objetivo": "sitio", "objetivos": ["origen-1", "cdn"],
                              "disponibilidad_pct": 99.9731, "disponibilidad_peor_caso_pct": 99.91,
                              "cobertura_pct": 99.95, "caido_s": 24.0, "desconocido_s": 42.0,
                              "retraso_autoridad_s": 0.0, "presupuesto_s": 93.6,
                              "presupuesto_restante_s": 69.6,
                              "caidas": [{"inicio": f"{T}21:10:00-06:00",
                                          "fin": f"{T}21:10:24-06:00", "segundos": 24.0,
                                          "falla": "HTTP 502"}]},
            "objetivos": [{"objetivo": "origen-1", "disponibilidad_pct": 99.97,
                           "disponibilidad_peor_caso_pct": 99.9, "cobertura_pct": 99.95,
                           "caido_s": 24.0, "desconocido_s": 42.0, "retraso_autoridad_s": 0.0,
                           "presupuesto_s": 93.6, "presupuesto_restante_s": 69.6}],
            "linea_de_tiempo": [{"inicio": f"{T}18:00:00-06:00", "fin": f"{T}21:10:00-06:00",
                                 "estado": "up"}]},
        "visitas": {
            "from": "2024-06-02T18:00:00-06:00", "to": "2024-06-03T20:00:00-06:00",
            "include_bots": False, "basis": "borde", "hits": 402311, "bot_hits": 5120,
            "bytes": 9_812_345_678, "visits": 18342, "unique_visitors": 12045,
            "pageviews": 90211, "views": 40122, "avg_visit_seconds": 312.5,
            "median_visit_seconds": 190.0,
            "days": [{"day": "2024-06-02", "visitors": 9000, "visits": 13000, "hits": 300000,
                      "pageviews": 70000},
                     {"day": "2024-06-03", "visitors": 3045, "visits": 5342, "hits": 102311,
                      "pageviews": 20211}],
            "top_pages": [{"path": "/", "pageviews": 60000, "visitors": 11000},
                          {"path": "/diputaciones.html", "pageviews": 20000, "visitors": 5000}],
            "top_views": [{"view": "#/ayuntamientos", "views": 30000, "visitors": 7000}],
            "geo": {"visitors": 12045,
                    "country": [{"country": "MX", "visitors": 11800},
                                {"country": "US", "visitors": 245}],
                    "state": [{"state": "Michoacán", "visitors": 9000},
                              {"state": "Ciudad de México", "visitors": 1500}]},
            "browsers": [{"browser": "Chrome", "visitors": 8000}],
            "devices": [{"device": "móvil", "visitors": 9000}],
            "referrers": [{"host": "www.facebook.com", "visits": 4000}],
            "series": {"granularity": "10min", "seconds": 600, "points": []},
            "beacon": {"views": 0, "reports": 0, "avg_visible_seconds": 0.0, "pages": []},
            "sources": [],
            "series_10min": [{"t": f"{T}20:00:00-06:00", "visitors": 300, "pageviews": 900,
                              "hits": 4000}],
            "series_hora": [{"t": f"{T}20:00:00-06:00", "visitors": 1300, "pageviews": 4000,
                             "hits": 20000}]},
        "seguridad": {
            "ataques": [{"inicio": f"{T}22:15:00-06:00", "fin": f"{T}22:25:00-06:00",
                         "pico_rps": 850.5, "fuentes": 37, "rechazadas": 120443}],
            "bloqueos": [{"clave": "203.0.113.7", "motivo": "ráfaga", "desde": f"{T}22:15:10-06:00",
                          "hasta": f"{T}23:15:10-06:00"}],
            "modo_ataque": [{"inicio": f"{T}22:16:00-06:00", "fin": f"{T}22:24:00-06:00"}],
            "legitimas_durante_ataques": 15230},
        "incidentes": [
            {"id": 1, "tipo": "outage", "tipo_texto": "caída", "severidad": "critical",
             "severidad_texto": "crítica", "objetivo": "origen-1", "estado": "resolved",
             "estado_texto": "resuelto", "inicio": "2024-06-03T03:10:00+00:00",
             "fin": "2024-06-03T03:10:24+00:00", "duracion_s": 24.0, "en_curso": False,
             "causa": "reinicio de nginx", "causa_sugerida": False,
             "impacto": {"peticiones": 310, "visitantes": 122}, "impacto_cifras": None,
             "medidas": [{"en": "2024-06-03T03:10:20+00:00", "por": "operador",
                          "texto": "reinicio del servicio"}],
             "actualizado": "2024-06-03T03:30:00+00:00", "detalle": {"vantage": "local"}},
            {"id": 2, "tipo": "outage", "tipo_texto": "caída", "severidad": "minor",
             "severidad_texto": "menor", "objetivo": None, "estado": "investigating",
             "estado_texto": "investigando", "inicio": "2024-06-03T05:00:00+00:00",
             "fin": None, "duracion_s": 600.0, "en_curso": True, "causa": None,
             "causa_sugerida": False, "impacto": None, "impacto_cifras": None, "medidas": [],
             "actualizado": None, "detalle": {"source": "manual"}}],
        "hallazgos": [{"clave": "corte_mas_visto", "texto": "El corte PREP-02 fue el más visto.",
                       "cifra": 4200},
                      {"clave": "cdn", "texto": "La CDN absorbió la mayor parte del tráfico.",
                       "cifra": "96.5 %"}],
        "recomendaciones": [{"clave": "cache", "texto": "Ampliar la caché de la CDN."}],
        "texto_operador": {"archivo": "/nonexistent/memoria.md", "existe": False},
        "revision": {"momento": "2024-06-01T18:00:00+00:00", "cumple": True, "puntos": [
            {"estado": "cumple", "inciso": "II.1.d", "requisito": "SFTP a 40 MB/s o más",
             "evidencia": "SFTP 127.0.0.1:2222: 200 MB en 1.9 s = 105.3 MB/s"}]},
        "integridad": {"url": "https://prep.example.mx/_difusor/cortes.json",
                       "huella": "SHA256:qynDZhUQhwfcLK7AcW/ErtDPIrbhLh1nEoo2/jqessQ",
                       "entradas": 42, "en_periodo": 40,
                       "cabeza": {"seq": 42, "hash": "ab" * 32, "tipo": "publish",
                                  "corte": "20241208_2350", "momento": f"{T}23:51:02-06:00"},
                       "verificaciones": {"hechas": 1234, "fallidas": 0, "puntos": 3}},
        "anexos": [],
    }
    if empty:
        doc["visitas"] = {"hits": 0, "bot_hits": 0, "bytes": 0, "visits": 0,
                          "unique_visitors": 0, "pageviews": 0, "views": 0,
                          "avg_visit_seconds": 0.0, "median_visit_seconds": 0.0, "days": [],
                          "top_pages": [], "top_views": [],
                          "geo": {"visitors": 0, "country": [], "state": []},
                          "browsers": [], "devices": [], "referrers": [],
                          "series_10min": [], "series_hora": []}
        doc["incidentes"], doc["hallazgos"], doc["recomendaciones"] = [], [], []
        doc["revision"] = None
        doc["seguridad"] = {"ataques": [], "bloqueos": [], "modo_ataque": [],
                            "legitimas_durante_ataques": 0}
        doc["resumen"]["incidentes_por_severidad"] = {}
    return doc


TABLES = {
    "cortes": (["corte", "recibido", "sha256"],
               [("PREP-01", "2024-06-02T20:00:40-06:00", "ab" * 32),
                ("PREP-02", "2024-06-02T21:00:40-06:00", "cd" * 32)]),
    "estados": (["estado", "visitantes"], [("Michoacán", 9000), ("Ciudad de México", 1500)]),
}
