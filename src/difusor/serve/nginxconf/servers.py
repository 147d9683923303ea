"""The ``server`` blocks: HTTP → HTTPS redirect (with TLS) and the site itself.

The live tree is ``store/site`` (a symlink moved at each activation): every request resolves it
once (``$realpath_root``) and is answered wholly from that release, with no file cache that could
outlive a swap, so an activation needs no reload.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from difusor.config import Config
from difusor.headers import REVALIDATE
from difusor.paths import StateLayout
from difusor.serve.app import _NOT_FOUND as NOT_FOUND_PAGE
from difusor.serve.nginxconf.syntax import add_header, indent, optional, quote
from difusor.serve.nginxconf.tls import tls_directives
from difusor.store.mediatypes import _TYPES as MEDIA_TYPES  # the embedded server's types

if TYPE_CHECKING:  # the settings these blocks are drawn from; it imports us
    from difusor.serve.nginxconf.conffile import NginxConfig

#: Which request header carries the visitor's address, per CDN kind ([[cdn]] kind).
REAL_IP_HEADERS = {
    "cloudflare": "CF-Connecting-IP",
    "fastly": "Fastly-Client-IP",
    "cloudfront": "X-Forwarded-For",
    "akamai": "X-Forwarded-For",
    "varnish": "X-Forwarded-For",
}

_FORBIDDEN = ("<!doctype html><meta charset=utf-8><title>403</title><h1>Acceso bloqueado</h1>"
              "<p>Demasiadas peticiones desde esta dirección; intenta más tarde.</p>\\n")
# The embedded server's 404 page, as an nginx string.
_NOT_FOUND = NOT_FOUND_PAGE.decode().replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def real_ip_header(cfg: Config) -> str:
    """``[nginx] real_ip_header``, else the first ``[[cdn]]``'s convention, else X-Forwarded-For."""
    if cfg.nginx.real_ip_header:
        return cfg.nginx.real_ip_header
    for cdn in cfg.cdn:
        return REAL_IP_HEADERS[cdn.kind]
    return "X-Forwarded-For"


def servers(conf: NginxConfig) -> str:
    n = conf.cfg.nginx
    parts = []
    if conf.tls:
        parts.append(_redirect_server(conf))
        listen = f"listen {n.listen_tls} ssl http2{_default(conf)};"
    else:
        listen = f"listen {n.listen}{_default(conf)};"
    parts.append(_site_server(conf, listen))
    return "\n".join(parts)


def _default(conf: NginxConfig) -> str:
    """With [sites], the default site answers the Host names no site claims."""
    return " default_server" if conf.default_server else ""


def _title(text: str, width: int = 84) -> str:
    return f"# ---- {text} {'-' * max(3, width - 8 - len(text))}\n"


def _headers(conf: NginxConfig, pairs: Iterable[tuple[str, str]]) -> list[str]:
    """``add_header`` lines (indented for a location): the server-wide headers every block
    must repeat, then ``pairs``."""
    out = ['    add_header X-Difusor-Corte "$difusor_corte" always;']
    if conf.tls and conf.cfg.nginx.hsts_seconds:
        pairs = [("Strict-Transport-Security", f"max-age={conf.cfg.nginx.hsts_seconds}"),
                 *pairs]
    return out + ["    " + add_header(name, value) for name, value in pairs]


def _common(conf: NginxConfig) -> str:
    cfg = conf.cfg
    n = cfg.nginx
    lines = [
        f"server_name {conf.server_name};",
        "server_tokens off;",
        f"access_log {quote(str(conf.access_log))} difusor buffer=64k flush=1s;",
        f"limit_req zone=difusor burst={n.limit_req_burst} nodelay;",
        "limit_req_status 429;",
    ]
    if cfg.shield.nginx_include:
        lines += ["# Bloqueos del escudo: «difusor run» reescribe este archivo y recarga nginx.",
                  f"include {quote(optional(cfg.path(cfg.shield.nginx_include)))};"]
    if n.real_ip_from:
        lines += [f"set_real_ip_from {net};" for net in n.real_ip_from]
        header = real_ip_header(cfg)
        lines.append(f"real_ip_header {header};")
        if header.lower() == "x-forwarded-for":
            lines.append("real_ip_recursive on;")
    else:
        lines.append("# Detrás de una CDN: define [nginx] real_ip_from para usar la IP real "
                     f"({real_ip_header(cfg)}).")
    return "\n".join(lines)


def _acme(conf: NginxConfig) -> str:
    return (f"# Retos HTTP-01 de ACME (certbot --webroot -w {conf.acme_root}).\n"
            "location ^~ /.well-known/acme-challenge/ {\n"
            f"    root {quote(str(conf.acme_root))};\n"
            "    default_type text/plain;\n"
            "    try_files $uri =404;\n"
            "}")


def _redirect_server(conf: NginxConfig) -> str:
    n = conf.cfg.nginx
    port = "" if n.listen_tls == 443 else f":{n.listen_tls}"
    body = "\n".join([
        f"listen {n.listen}{_default(conf)};",
        _common(conf),
        _acme(conf),
        "location / {",
        f"    return 301 https://$host{port}$request_uri;",
        "}",
    ])
    name = f" ({conf.name})" if conf.name else ""
    return _title(f"HTTP: solo redirige a HTTPS{name}", 78) + f"server {{\n{indent(body)}\n}}\n"


def _site_server(conf: NginxConfig, listen: str) -> str:
    site = quote(str(conf.root))
    shielded = bool(conf.cfg.shield.nginx_include)
    lines = [listen, _common(conf)]
    if conf.tls:
        lines += tls_directives(conf.tls_cert, conf.tls_key)
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
        "error_page 403 = @difusor_403;" if shielded else "error_page 403 =404 @difusor_404;",
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
    lines += _own_paths(conf)
    lines += [
        "location @difusor_404 {",
        *_headers(conf, REVALIDATE),
        "    types { }  # not the type of the missing path's extension",
        "    default_type text/html;",
        f'    return 404 "{_NOT_FOUND}";',
        "}",
        "",
    ]
    if shielded:
        lines += _forbidden(conf)
    if not conf.tls:
        lines += [_acme(conf), ""]
    lines += [
        "# Encabezados por ruta, de la misma política que el servidor embebido. Cada bloque",
        "# repite los de todo el servidor: nginx descarta los heredados si el bloque tiene",
        "# los suyos.",
    ]
    for loc in conf.locations():
        lines.append(f"# {loc.why}" if loc.why else "")
        lines.append(f"location {loc.match} {{")
        lines.append("    root $difusor_root;")
        lines.append("    try_files $uri $uri/ =404;")
        lines += _headers(conf, loc.headers)
        lines.append("}")
    title = f"{'HTTPS' if conf.tls else 'HTTP'}: el sitio{f' {conf.name}' if conf.name else ''}"
    return _title(title) + f"server {{\n{indent(chr(10).join(lines))}\n}}\n"


def _own_paths(conf: NginxConfig) -> list[str]:
    """``/_difusor/status.json``, ``/health``, the portal's widget ``corte.js`` and the CDN
    probe of ``difusor check`` go to the embedded server; the rest is 404."""
    lines: list[str] = []
    for path in ("= /_difusor/status.json", "= /_difusor/health", "= /_difusor/corte.js",
                 "^~ /_difusor/sonda-cdn/"):
        lines += [
            f"location {path} {{",
            f"    proxy_pass {conf.upstream};",
            # With [sites]: the Host the embedded server knows this block's site by.
            *([f"    proxy_set_header Host {conf.upstream_host};"] if conf.upstream_host else []),
            *(["    proxy_ssl_verify off;  # el servidor embebido, en este mismo equipo"]
              if conf.upstream.startswith("https:") else []),
            "    proxy_connect_timeout 2s;",
            "    proxy_read_timeout 5s;",
            *_headers(conf, ()),
            "}",
        ]
    # The public chain of cortes and each corte's manifest: files nginx serves itself, with
    # the no-cache rule of main.json (integrity/published.py writes them whole).
    folder = StateLayout(conf.cfg.state_dir).integrity.absolute()
    for match, target in (("= /_difusor/cortes.json", folder / "cortes.json"),
                          ("^~ /_difusor/cortes/", f"{folder / 'cortes'}/"),
                          ("^~ /_difusor/manifest/", f"{folder / 'manifest'}/")):
        lines += [
            f"location {match} {{",
            f"    alias {quote(str(target))};",
            "    types { }",
            "    default_type application/json;",
            *_headers(conf, conf.policy.main_headers()),
            "}",
        ]
    lines += [
        "location ^~ /_difusor/ {",
        "    return 404;",
        "}",
        "",
    ]
    return lines


def _forbidden(conf: NginxConfig) -> list[str]:
    """403s: a folder without index.html is 404 as in the embedded server; any other 403
    is a ``deny`` of the shield's include and stays 403, so a blocked visitor is told so."""
    return [
        "location @difusor_403 {",
        *_headers(conf, REVALIDATE),
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


def _types() -> dict[str, list[str]]:
    by_type: dict[str, list[str]] = {}
    for ext, mime in MEDIA_TYPES.items():
        by_type.setdefault(mime, []).append(ext.lstrip("."))
    return by_type
