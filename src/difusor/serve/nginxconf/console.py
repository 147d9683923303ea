"""The console's ``server`` block (``[console] server_name``): HTTPS only, in front of the
console on loopback, with the event stream unbuffered.

The console trusts ``X-Real-IP`` and ``X-Forwarded-Proto`` only from a proxy on loopback (this
one): its login rate limit sees each operator's address, and behind TLS its cookies are
``Secure`` and ``__Host-``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from difusor.errors import ConfigError
from difusor.serve.nginxconf.syntax import indent
from difusor.serve.nginxconf.tls import tls_directives

if TYPE_CHECKING:
    from difusor.serve.nginxconf.conffile import NginxConfig


def console_server(conf: NginxConfig) -> str:
    cfg = conf.cfg
    name = cfg.console.server_name
    if not name:
        return ""
    if not conf.tls:
        raise ConfigError("[console] server_name publica la consola: solo con TLS; define "
                          "[nginx] tls_cert y tls_key (un certificado que cubra ese nombre)")
    n = cfg.nginx
    upstream = f"http://{cfg.console.listen}"
    proxy = [f"proxy_pass {upstream};", "proxy_http_version 1.1;",
             'proxy_set_header Connection "";', "proxy_set_header Host $host;",
             "proxy_set_header X-Real-IP $remote_addr;",
             "proxy_set_header X-Forwarded-Proto $scheme;"]
    body = "\n".join([
        f"listen {n.listen_tls} ssl http2;",
        f"server_name {name};",
        "server_tokens off;",
        *tls_directives(conf.tls_cert, conf.tls_key),
        f'add_header Strict-Transport-Security "max-age={n.hsts_seconds or 31536000}" always;',
        "client_max_body_size 64k;",
        "location / {",
        indent("\n".join(proxy)),
        "}",
        "# El flujo de eventos: sin búfer, y abierto toda la noche.",
        "location = /eventos {",
        indent("\n".join([*proxy, "proxy_buffering off;", "proxy_read_timeout 1h;"])),
        "}",
    ])
    redirect = "\n".join([f"listen {n.listen};", f"server_name {name};", "server_tokens off;",
                          "location / {", "    return 301 https://$host$request_uri;", "}"])
    return ("# ---- consola del operador (solo HTTPS) " + "-" * 38 + "\n"
            f"server {{\n{indent(redirect)}\n}}\nserver {{\n{indent(body)}\n}}\n")
