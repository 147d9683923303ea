"""The memoria técnica (convocatoria II.4): one document, built from the same numbers the
``--json`` commands print.

The flow: ``period`` decides the range; ``document.build`` gathers every figure into one plain
dict (what ``difusor report --json`` prints), the ledger read in a child process while the
visits are summarised (``background``); ``charts``, ``mexico_map`` and ``diagram`` draw SVG
from that dict (and the config); ``render`` turns dict + drawings into one self-contained HTML
page and ``typeset`` writes it with a PDF/A-3b and the CSV annexes (``annexes``) attached —
in two child processes that work side by side (``worker``). Same data, same bytes.

The document dict (keys in Spanish, like ``uptime --json``; times ISO 8601 in the site's zone):

    version             1
    generado            ISO: derived from the data (the period's end, or ``--now`` when the
                        period is still running), never the wall clock
    borrador            bool (--draft)
    periodo             {desde, hasta, zona, origen: "operacion" | "opciones" | "datos"}
    sitio               {nombre, autoridad, eleccion, url, urls: [..], logo: path | None,
                         personal: [{nombre, rol, contacto}]}  ([[personal]])
                        (autoridad, eleccion: [operation] authority/election, or None; logo:
                        logo.svg|png|jpg beside difusor.toml, or None)
    resumen             {disponibilidad_pct, disponibilidad_peor_caso_pct, desconocido_s,
                         cortes_recibidos, cortes_publicados, paquetes_rechazados,
                         retraso_publicacion_s: {p50, p95, max}, retraso_borde_s: {p50, p95, max},
                         visitantes_totales, visitantes_unicos, paginas_vistas, vistas,
                         tiempo_promedio_s, tiempo_mediana_s,
                         incidentes_por_severidad: {sev: n}, ataques_contenidos}
                        visitantes_totales = visitas.total_visitors (arrivals = visits);
                        visitantes_unicos = visitas.unique_visitors (visitor-days)
    arquitectura        {componentes: [{nombre, tipo, detalle, version}]}
    cronologia          {hitos: [{momento, texto}],
                         cortes: [{corte, hora_autoridad, recibido, en_linea, verificado_borde,
                                   retraso_s, retraso_borde_s, archivos, cambiados, sha256,
                                   verificaciones, tipo}],
                         rechazados: [{paquete, recibido, codigo, motivo}],
                         paquetes_recibidos}
                        (a corte belongs to the period when its package was received in it;
                        cambiados None when the ledger does not say; verificaciones: the
                        checksums verified)
    simulacros          [{nombre, sitio, url, desde, hasta, cortes_publicados, primer_corte,
                          ultimo_corte, paquetes_rechazados, retraso_publicacion_s: {p50, p95,
                          max}, disponibilidad_pct, incidentes, vaciado}]
                        each [[operation.simulacros]] window as the test site of the same
                        authority recorded it, whatever the period (report/simulacros.py);
                        [] for a difusor without [sites]
    disponibilidad      ``uptime --json`` for the period, verbatim; it carries the public
                        site's linea_de_tiempo: [{inicio, fin, estado}]
                        (up | degraded | down | unknown)
    visitas             ``analytics summary --json`` for the period, verbatim; it carries
                        total_visitors, series_10min and series_hour: [{t, visitors, pageviews,
                        hits}] whatever the range's length; plus series_hora (= series_hour)
    seguridad           {ataques: [{incidente, inicio, fin, duracion_s, pico_rps,
                                    fuentes: [{clave, peticiones}], rechazadas, contenido}],
                         bloqueos: [{clave, tipo, motivo, desde, hasta, por}],
                         modo_ataque: [{inicio, fin}], legitimas_durante_ataques,
                         rechazadas_durante_ataques, segundos_bajo_ataque}
    incidentes          [``incidents --json`` entries that overlap the period, verbatim,
                         oldest first; each has titulo, categoria (II.4.a) and deteccion]
    hallazgos           [{clave, texto, cifra}]     sentences computed from the figures
    recomendaciones     [{clave, texto}]
    metodologia         [{termino, definicion}]     the definitions the figures follow
    texto_operador      {archivo, existe}           the operator's memoria.md (never overwritten)
    anexos              [{archivo, filas, sha256}]  filled by ``annexes`` when written
"""
