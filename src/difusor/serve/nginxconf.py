"""The nginx configuration, rendered from the same header policy as the embedded server.

nginx picks exactly one ``location`` per request and a block with its own ``add_header`` drops
every inherited one, while the policy folds *all* matching rules (a later one wins per header).
So the policy's globs become regions: one regex location per set of globs that can match the
same path (an intersection written with look-aheads), most specific first, each carrying the
folded headers of its set plus the server-wide ones; literal paths (``json/main.json``) get an
exact-match location. Globs that provably cannot meet (``*.js`` and ``*.css``) form no region.

The live tree is ``store/site`` (a symlink moved at each activation): every request resolves it
once (``$realpath_root``) and is answered wholly from that release, with no file cache that could
outlive a swap, so an activation needs no reload.

One file, for ``/etc/nginx/conf.d/`` (included inside ``http {}``): first the ``http``-level
pieces (rate-limit zone, JSON log format, maps), then the ``server`` blocks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from difusor.config import Config, parse_address
from difusor.errors import ConfigError
from difusor.headers import REVALIDATE, HeaderPolicy, Rule
from difusor.paths import StateLayout
from difusor.serve.app import _NOT_FOUND as NOT_FOUND_PAGE
from difusor.store.mediatypes import _TYPES as MEDIA_TYPES  # the embedded server's types

#: The embedded access log's fields (serve/accesslog.py), in its order.
LOG_FIELDS = ("time", "ip", "method", "path", "query", "status", "bytes", "referer", "user_agent",
              "corte", "duration_ms")

#: Which request header carries the visitor's address, per CDN kind ([[cdn]] kind).
REAL_IP_HEADERS = {
    "cloudflare": "CF-Connecting-IP",
    "fastly": "Fastly-Client-IP",
    "cloudfront": "X-Forwarded-For",
    "akamai": "X-Forwarded-For",
    "varnish": "X-Forwarded-For",
}

# Mozilla's "intermediate" profile (ssl-config.mozilla.org, guideline 5.7): TLS 1.2 and 1.3.
TLS_PROTOCOLS = "TLSv1.2 TLSv1.3"
TLS_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
TLS_CURVES = "X25519:prime256v1:secp384r1"

MAX_REGIONS = 512
_WILD = "*?["
# The embedded server's 404 page, as an nginx string.
_FORBIDDEN = ("<!doctype html><meta charset=utf-8><title>403</title><h1>Acceso bloqueado</h1>"
              "<p>Demasiadas peticiones desde esta dirección; intenta más tarde.</p>\\n")
_NOT_FOUND = NOT_FOUND_PAGE.decode().replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass(frozen=True)
class Location:
    """One nginx ``location``: its match (``= /x``, ``~ "regex"``, ``/``) and full header set."""

    match: str
    headers: tuple[tuple[str, str], ...]
    why: str = ""


# -- globs → regions ------------------------------------------------------------------------------

def glob_regex(glob: str) -> str:
    """An fnmatch glob over site paths (``*`` crosses ``/``) → PCRE over nginx's ``$uri``."""
    out, i, n = [], 0, len(glob)
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                out.append(r"\[")
                continue
            body = glob[i:j].replace("\\", "\\\\")
            i = j + 1
            if body.startswith("!"):
                body = "^" + body[1:]
            elif body.startswith("^"):
                body = "\\" + body
            out.append(f"[{body}]")
        else:
            out.append(re.escape(c) if c in ".^$+(){}|\\" else c)
    return "".join(out)


def _literal(glob: str) -> bool:
    return not any(c in glob for c in _WILD)


def _universal(glob: str) -> bool:
    return bool(glob) and set(glob) == {"*"}


def _ends(glob: str) -> tuple[str, str]:
    """The literal text every match of ``glob`` starts and ends with."""
    first = min((glob.index(c) for c in _WILD if c in glob), default=len(glob))
    last = max((glob.rindex(c) for c in "*?]" if c in glob), default=-1)
    return glob[:first], glob[last + 1:]


def may_overlap(a: str, b: str) -> bool:
    """False only when no path can match both globs (exact for literal paths)."""
    if _literal(a):
        return fnmatchcase(a, b)
    if _literal(b):
        return fnmatchcase(b, a)
    (pa, sa), (pb, sb) = _ends(a), _ends(b)
    return (pa.startswith(pb) or pb.startswith(pa)) and (sa.endswith(sb) or sb.endswith(sa))


def _fold(rules: list[Rule], chosen: set[str]) -> tuple[tuple[str, str], ...]:
    headers: dict[str, tuple[str, str]] = {}
    for rule in rules:
        if _universal(rule.match) or rule.match in chosen:
            for name, value in rule.headers:
                headers[name.lower()] = (name, value)
    return tuple(headers.values())


def header_locations(policy: HeaderPolicy) -> list[Location]:
    """The policy as nginx locations, in the order they must appear (first match wins)."""
    rules = policy.rules
    literals = list(dict.fromkeys(r.match for r in rules if _literal(r.match)))
    globs = list(dict.fromkeys(r.match for r in rules
                               if not _literal(r.match) and not _universal(r.match)))
    cliques: list[tuple[str, ...]] = []

    def grow(clique: tuple[str, ...], candidates: list[str]) -> None:
        for k, glob in enumerate(candidates):
            bigger = (*clique, glob)
            cliques.append(bigger)
            if len(cliques) > MAX_REGIONS:
                raise ConfigError(
                    f"las reglas de [[headers]] se cruzan de demasiadas formas (más de "
                    f"{MAX_REGIONS} combinaciones) para expresarlas en nginx; simplifícalas")
            grow(bigger, [g for g in candidates[k + 1:] if may_overlap(glob, g)])

    grow((), globs)
    cliques.sort(key=len, reverse=True)  # stable: equal sizes keep the policy's order
    out = [Location(f"= /{path}", tuple(policy.headers_for(path)), "ruta exacta")
           for path in literals]
    for clique in cliques:
        if len(clique) == 1:
            regex = f"^/{glob_regex(clique[0])}$"
        else:
            regex = "^" + "".join(f"(?=/{glob_regex(g)}$)" for g in clique[:-1])
            regex += f"/{glob_regex(clique[-1])}$"
        out.append(Location(f"~ {_quote(regex)}", _fold(rules, set(clique)), " ∩ ".join(clique)))
    out.append(Location("/", _fold(rules, set()), "todo lo demás"))
    return out


# -- the configuration ----------------------------------------------------------------------------

def real_ip_header(cfg: Config) -> str:
    """``[nginx] real_ip_header``, else the first ``[[cdn]]``'s convention, else X-Forwarded-For."""
    if cfg.nginx.real_ip_header:
        return cfg.nginx.real_ip_header
    for cdn in cfg.cdn:
        return REAL_IP_HEADERS[cdn.kind]
    return "X-Forwarded-For"


class NginxConfig:
    """``difusor nginx-config``: the ``http``-level pieces and the ``server`` blocks."""

    def __init__(self, cfg: Config, policy: HeaderPolicy | None = None) -> None:
        self.cfg = cfg
        self.policy = policy or HeaderPolicy.from_config(cfg)
        state = StateLayout(cfg.state_dir)
        n = cfg.nginx
        self.root = (cfg.path(n.root) if n.root else state.store / "site").absolute()
        self.access_log = cfg.nginx_access_log
        self.acme_root = (cfg.path(n.acme_webroot) if n.acme_webroot
                          else state.root / "acme").absolute()
        self.tls = bool(n.tls_cert and n.tls_key)
        self.tls_cert = cfg.path(n.tls_cert).absolute() if n.tls_cert else None
        self.tls_key = cfg.path(n.tls_key).absolute() if n.tls_key else None
        if bool(n.tls_cert) != bool(n.tls_key):
            raise ConfigError("[nginx] tls_cert y tls_key van juntos: define los dos o ninguno")
        host, port = parse_address(cfg.web.listen)
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        web_tls = bool(cfg.web.tls_cert and cfg.web.tls_key)
        self.upstream = f"{'https' if web_tls else 'http'}://" + (
            f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        # nginx has no escape for "$" in a string: a value with one uses a variable holding it.
        self._dollar = any("$" in value for rule in self.policy.rules for _, value in rule.headers)

    @classmethod
    def from_config(cls, cfg: Config) -> NginxConfig:
        return cls(cfg)

    def locations(self) -> list[Location]:
        return header_locations(self.policy)

    def instructions(self, written: Path | None = None) -> str:
        """What the operator does next (Spanish, for stderr), with warnings about missing files."""
        lines = [f"Escrita en {written}." if written else
                 "Guárdala, p. ej., en /etc/nginx/conf.d/difusor.conf (se incluye dentro de http { })."]
        lines.append("Después: nginx -t && nginx -s reload (recarga sin cortar conexiones). "
                     "Cada corte nuevo se sirve sin recargar nginx.")
        if not self.root.exists():
            lines.append(f"aviso: {self.root} aún no existe; aparece con la primera publicación "
                         "(mientras, nginx responde 404).")
        if not self.access_log.parent.is_dir():
            lines.append(f"aviso: falta la carpeta del registro de accesos {self.access_log.parent}.")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                lines.append(f"aviso: no existe {path} ([nginx] tls_cert / tls_key).")
        if self.cfg.cdn and not self.cfg.nginx.real_ip_from:
            lines.append("aviso: hay [[cdn]] pero [nginx] real_ip_from está vacío: nginx verá la "
                         "IP de la CDN y limit_req frenaría a sus nodos, no a cada visitante.")
        if not self.tls:
            lines.append("Sin TLS: define [nginx] tls_cert y tls_key para servir HTTPS "
                         "(certificados de Let's Encrypt: docs/nginx.md).")
        lines.append(f"Los procesos de nginx (www-data) deben poder leer {self.root} y las "
                     "carpetas que lo contienen.")
        return "\n".join(lines) + "\n"

    def render(self) -> str:
        """The whole file: the ``http``-level section, then the ``server`` blocks."""
        return (
            "# difusor — configuración de nginx generada por «difusor nginx-config».\n"
            "# No la edites a mano: cambia difusor.toml y vuelve a generarla; después\n"
            "# «nginx -t && nginx -s reload» (recarga sin cortar conexiones).\n"
            "# Va dentro de http { } (p. ej. /etc/nginx/conf.d/difusor.conf).\n\n"
            + self.http_level() + "\n" + self.servers()
        )

    # -- http { } level ---------------------------------------------------------------

    def http_level(self) -> str:
        n = self.cfg.nginx
        fields = {
            "time": '"$difusor_time"', "ip": '"$remote_addr"', "method": '"$request_method"',
            "path": '"$difusor_path"', "query": '"$args"', "status": "$status",
            "bytes": "$body_bytes_sent", "referer": '"$http_referer"',
            "user_agent": '"$http_user_agent"', "corte": '"$difusor_corte"',
            "duration_ms": "$difusor_duration_ms",
        }
        line = "{" + ",".join(f'"{k}":{fields[k]}' for k in LOG_FIELDS) + "}"
        site = str(self.root)
        dollar = '\ngeo $difusor_dollar { default "$"; }\n' if self._dollar else ""
        return f"""# ---- nivel http ------------------------------------------------------------
# Límite de peticiones por IP (la IP real, detrás de la CDN: ver set_real_ip_from).
limit_req_zone $binary_remote_addr zone=difusor:10m rate={n.limit_req_rate}r/s;

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
# El corte que sirve cada petición: la carpeta a la que apunta {site} en ese momento.
map $difusor_root $difusor_corte {{
    {_quote("~^" + re.escape(site) + "$")} "-";  # antes del primer corte
    "~/(?<difusor_corte_id>[^/]+)$" $difusor_corte_id;
    default "-";
}}
log_format difusor escape=json '{line}';
{dollar}"""

    # -- server { } blocks --------------------------------------------------------------

    def servers(self) -> str:
        n = self.cfg.nginx
        parts = []
        if self.tls:
            parts.append(self._redirect_server())
            listen = f"listen {n.listen_tls} ssl http2;"
        else:
            listen = f"listen {n.listen};"
        parts.append(self._site_server(listen))
        return "\n".join(parts)

    def _headers(self, pairs: Iterable[tuple[str, str]]) -> list[str]:
        """``add_header`` lines (indented for a location): the server-wide headers every block
        must repeat, then ``pairs``."""
        out = ['    add_header X-Difusor-Corte "$difusor_corte" always;']
        if self.tls and self.cfg.nginx.hsts_seconds:
            pairs = [("Strict-Transport-Security", f"max-age={self.cfg.nginx.hsts_seconds}"),
                     *pairs]
        return out + ["    " + self._add_header(name, value) for name, value in pairs]

    def _common(self) -> str:
        n = self.cfg.nginx
        lines = [
            f"server_name {n.server_name};",
            "server_tokens off;",
            f"access_log {_quote(str(self.access_log))} difusor buffer=64k flush=1s;",
            f"limit_req zone=difusor burst={n.limit_req_burst} nodelay;",
            "limit_req_status 429;",
        ]
        if self.cfg.shield.nginx_include:
            lines += ["# Bloqueos del escudo: «difusor run» reescribe este archivo y recarga nginx.",
                      f"include {_quote(_optional(self.cfg.path(self.cfg.shield.nginx_include)))};"]
        if n.real_ip_from:
            lines += [f"set_real_ip_from {net};" for net in n.real_ip_from]
            header = real_ip_header(self.cfg)
            lines.append(f"real_ip_header {header};")
            if header.lower() == "x-forwarded-for":
                lines.append("real_ip_recursive on;")
        else:
            lines.append("# Detrás de una CDN: define [nginx] real_ip_from para usar la IP real "
                         f"({real_ip_header(self.cfg)}).")
        return "\n".join(lines)

    def _acme(self) -> str:
        return (f"# Retos HTTP-01 de ACME (certbot --webroot -w {self.acme_root}).\n"
                "location ^~ /.well-known/acme-challenge/ {\n"
                f"    root {_quote(str(self.acme_root))};\n"
                "    default_type text/plain;\n"
                "    try_files $uri =404;\n"
                "}")

    def _redirect_server(self) -> str:
        n = self.cfg.nginx
        port = "" if n.listen_tls == 443 else f":{n.listen_tls}"
        body = "\n".join([
            f"listen {n.listen};",
            self._common(),
            self._acme(),
            "location / {",
            f"    return 301 https://$host{port}$request_uri;",
            "}",
        ])
        return f"# ---- HTTP: solo redirige a HTTPS -------------------------------------------\n" \
               f"server {{\n{_indent(body)}\n}}\n"

    def _site_server(self, listen: str) -> str:
        site = _quote(str(self.root))
        lines = [listen, self._common()]
        if self.tls:
            lines += [
                f"ssl_certificate {_quote(str(self.tls_cert))};",
                f"ssl_certificate_key {_quote(str(self.tls_key))};",
                "# Perfil «intermediate» de Mozilla.",
                f"ssl_protocols {TLS_PROTOCOLS};",
                f"ssl_ecdh_curve {TLS_CURVES};",
                f"ssl_ciphers {TLS_CIPHERS};",
                "ssl_prefer_server_ciphers off;",
                "ssl_session_timeout 1d;",
                "ssl_session_cache shared:difusor_tls:10m;",
                "ssl_session_tickets off;",
            ]
        lines += [
            "",
            "# El corte en línea: el enlace simbólico se resuelve una vez por petición y toda la",
            "# respuesta sale de esa carpeta; sin caché de archivos, una activación no pide recarga.",
            f"root {site};",
            "disable_symlinks off;",
            "open_file_cache off;",
            f"set $difusor_root {site};",
            f"if (-d {site}) {{",
            "    set $difusor_root $realpath_root;",
            "}",
            "uninitialized_variable_warn off;  # una petición rechazada antes (400) no lo fija",
            "index index.html;",
            "etag on;",
            "absolute_redirect off;",
            "sendfile on;",
            "tcp_nopush on;",
            "# Variantes .gz ya hechas por el almacén; nada se comprime al vuelo.",
            "gzip off;",
            "gzip_static on;",
            "gzip_vary on;",
            "gzip_proxied any;",
            "gzip_http_version 1.0;",
            "# Los mismos tipos que el servidor embebido.",
            "types {",
            *(f"    {mime} {' '.join(sorted(exts))};" for mime, exts in _types().items()),
            "}",
            "default_type application/octet-stream;",
            "# Lo que no existe (y una carpeta sin index.html) es 404, como en el embebido.",
            "error_page 404 @difusor_404;",
            "error_page 403 = @difusor_403;" if self.cfg.shield.nginx_include
            else "error_page 403 =404 @difusor_404;",
            "",
            "# Archivos y carpetas que empiezan con punto: no se sirven (salvo .well-known).",
            'location ~ "/\\.(?!well-known(/|$))" {',
            "    return 404;",
            "}",
            "",
            "# Una ruta con «//» nunca se sirve con ese nombre (una CDN la guardaría aparte):",
            "# redirige a la forma canónica, como el servidor embebido (un tramo por salto).",
            "merge_slashes off;",
            'location ~ "//" {',
            '    rewrite "^(.*?)//+(.*)$" "$1/$2" permanent;',
            "}",
            "",
            "# /_difusor/: lo propio del difusor, atendido por el servidor embebido.",
        ]
        for path in ("/_difusor/status.json", "/_difusor/health"):
            lines += [
                f"location = {path} {{",
                f"    proxy_pass {self.upstream};",
                *(["    proxy_ssl_verify off;  # el servidor embebido, en este mismo equipo"]
                  if self.upstream.startswith("https:") else []),
                "    proxy_connect_timeout 2s;",
                "    proxy_read_timeout 5s;",
                *self._headers(()),
                "}",
            ]
        lines += [
            "location ^~ /_difusor/ {",
            "    return 404;",
            "}",
            "",
            "location @difusor_404 {",
            *self._headers(REVALIDATE),
            "    types { }  # not the type of the missing path's extension",
            "    default_type text/html;",
            f'    return 404 "{_NOT_FOUND}";',
            "}",
            "",
        ]
        if self.cfg.shield.nginx_include:
            lines += self._forbidden()
        if not self.tls:
            lines += [self._acme(), ""]
        lines += [
            "# Encabezados por ruta, de la misma política que el servidor embebido. Cada bloque",
            "# repite los de todo el servidor: nginx descarta los heredados si el bloque tiene",
            "# los suyos.",
        ]
        for loc in self.locations():
            lines.append(f"# {loc.why}" if loc.why else "")
            lines.append(f"location {loc.match} {{")
            lines.append("    root $difusor_root;")
            lines.append("    try_files $uri $uri/ =404;")
            lines += self._headers(loc.headers)
            lines.append("}")
        title = "HTTPS" if self.tls else "HTTP"
        return (f"# ---- {title}: el sitio {'-' * (66 - len(title))}\n"
                f"server {{\n{_indent(chr(10).join(lines))}\n}}\n")

    def _forbidden(self) -> list[str]:
        """403s: a folder without index.html is 404 as in the embedded server; any other 403
        is a ``deny`` of the shield's include and stays 403, so a blocked visitor is told so."""
        return [
            "location @difusor_403 {",
            *self._headers(REVALIDATE),
            "    types { }",
            "    default_type text/html;",
            '    set $difusor_sin_index "";',
            "    if (-d $request_filename) {",
            '        set $difusor_sin_index "1";',
            "    }",
            "    if (-f $request_filename/index.html) {",
            '        set $difusor_sin_index "";',
            "    }",
            "    if ($difusor_sin_index) {",
            f'        return 404 "{_NOT_FOUND}";',
            "    }",
            f'    return 403 "{_FORBIDDEN}";',
            "}",
            "",
        ]

    def _add_header(self, name: str, value: str) -> str:
        # Names and values were checked once, when the config was read ([[headers]]).
        text = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "${difusor_dollar}")
        return f'add_header {name} "{text}" always;'


def _types() -> dict[str, list[str]]:
    by_type: dict[str, list[str]] = {}
    for ext, mime in MEDIA_TYPES.items():
        by_type.setdefault(mime, []).append(ext.lstrip("."))
    return by_type


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _optional(path: Path) -> str:
    """``include`` fails when its file is missing, but not when a pattern matches nothing: the
    last character as a one-letter class (``bloqueos.con[f]``) lets nginx start before the shield
    writes the file the first time."""
    text = str(path.absolute())
    if any(c in text for c in "*?[]") or not text[-1:].isalnum():
        return text
    return f"{text[:-1]}[{text[-1]}]"


def _indent(text: str) -> str:
    return "\n".join(("    " + line) if line else "" for line in text.split("\n"))


def standalone(include: Path, prefix: Path, *, user: str | None = None) -> str:
    """A whole ``nginx.conf`` around ``include`` whose pid, logs and temporary files live in
    ``prefix`` (for ``nginx -p PREFIX -c CONF``: tests, or a private nginx beside the system's)."""
    temps = "\n".join(f"    {kind}_temp_path {_quote(str(prefix / 'tmp' / kind))};"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (
        (f"user {user};\n" if user else "")
        + "worker_processes 1;\n"
        f"pid {_quote(str(prefix / 'nginx.pid'))};\n"
        f"error_log {_quote(str(prefix / 'error.log'))} warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"{temps}\n"
        f"    include {_quote(str(include))};\n"
        "}\n"
    )
