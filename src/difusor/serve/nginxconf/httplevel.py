"""The ``http``-level pieces: rate-limit zone, the JSON access log's format and its maps."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from difusor.serve.nginxconf.syntax import quote

#: The embedded access log's fields (serve/accesslog.py), in its order.
LOG_FIELDS = ("time", "ip", "method", "path", "query", "status", "bytes", "referer", "user_agent",
              "corte", "duration_ms")


def http_level(roots: Sequence[Path], limit_req_rate: int, *, dollar: bool) -> str:
    """``roots``: the live tree (``store/site``) of each site, declared once here for all the
    ``server`` blocks; ``dollar``: a header value holds a ``$``, which nginx can only write
    through a variable holding it."""
    fields = {
        "time": '"$difusor_time"', "ip": '"$remote_addr"', "method": '"$request_method"',
        "path": '"$difusor_path"', "query": '"$args"', "status": "$status",
        "bytes": "$body_bytes_sent", "referer": '"$http_referer"',
        "user_agent": '"$http_user_agent"', "corte": '"$difusor_corte"',
        "duration_ms": "$difusor_duration_ms",
    }
    line = "{" + ",".join(f'"{k}":{fields[k]}' for k in LOG_FIELDS) + "}"
    before = "\n".join(f'    {quote("~^" + re.escape(str(root)) + "$")} "-";  # antes del primer corte'
                       for root in roots)
    where = str(roots[0]) if len(roots) == 1 else "el árbol de su sitio (store/site)"
    variable = '\ngeo $difusor_dollar { default "$"; }\n' if dollar else ""
    return f"""# ---- nivel http ------------------------------------------------------------
# Límite de peticiones por IP (la IP real, detrás de la CDN: ver set_real_ip_from).
limit_req_zone $binary_remote_addr zone=difusor:10m rate={limit_req_rate}r/s;

# Registro de accesos: mismos campos que el del servidor embebido (JSON por línea).
map $msec $difusor_ms {{
    "~\\.(?<difusor_ms_part>[0-9]{{3}})$" $difusor_ms_part;
    default "000";
}}
map $time_iso8601 $difusor_time {{
    "~^(?<difusor_t_day>.{{19}})(?<difusor_t_zone>.*)$" "$difusor_t_day.$difusor_ms$difusor_t_zone";
}}
map $request_time $difusor_duration_ms {{
    "~^0\\.0*(?<difusor_d_ms>[0-9]+)$" $difusor_d_ms;
    "~^(?<difusor_d_s>[0-9]+)\\.(?<difusor_d_f>[0-9]+)$" "$difusor_d_s$difusor_d_f";
    default 0;
}}
map $request_uri $difusor_path {{
    "~^(?<difusor_p>[^?]*)" $difusor_p;
}}
# El corte que sirve cada petición: la carpeta a la que apunta {where} en ese momento.
map $difusor_root $difusor_corte {{
{before}
    "~/(?<difusor_corte_id>[^/]+)$" $difusor_corte_id;
    default "-";
}}
log_format difusor escape=json '{line}';
{variable}"""
