"""The ``conf.d`` file itself: paths and options resolved from difusor.toml, the text, and what
the operator does next."""

from __future__ import annotations

from pathlib import Path

from difusor.config import Config, parse_address
from difusor.errors import ConfigError
from difusor.headers import HeaderPolicy
from difusor.paths import StateLayout
from difusor.serve.nginxconf.console import console_server
from difusor.serve.nginxconf.httplevel import http_level
from difusor.serve.nginxconf.regions import Location, header_locations
from difusor.serve.nginxconf.servers import servers
from difusor.serve.nginxconf.sites import site_servers


class NginxConfig:
    """``difusor nginx-config``: the ``http``-level pieces and the ``server`` blocks (with
    ``[sites]``, those of every site: ``sites.py``)."""

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
        # Without [sites] this object renders the one site. With [sites] it renders only the
        # http level, once, and ``sites`` holds one of these per site (from its view of the
        # file), whose fields below sites.py sets.
        self.name = ""
        self.server_name = n.server_name
        self.default_server = False
        self.upstream_host = ""  # the Host sent to the embedded server ("" = nginx's default)
        self.sites: list[NginxConfig] = site_servers(self) if cfg.sites else []

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
        blocks = self.sites or [self]
        for one in blocks:
            if not one.root.exists():
                lines.append(f"aviso: {one.root} aún no existe; aparece con la primera publicación "
                             "(mientras, nginx responde 404).")
            if not one.access_log.parent.is_dir():
                lines.append(f"aviso: falta la carpeta del registro de accesos {one.access_log.parent}.")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                lines.append(f"aviso: no existe {path} ([nginx] tls_cert / tls_key).")
        if self.cfg.cdn and not self.cfg.nginx.real_ip_from:
            lines.append("aviso: hay [[cdn]] pero [nginx] real_ip_from está vacío: nginx verá la "
                         "IP de la CDN y limit_req frenaría a sus nodos, no a cada visitante.")
        if not self.tls:
            lines.append("Sin TLS: define [nginx] tls_cert y tls_key para servir HTTPS "
                         "(certificados de Let's Encrypt: docs/nginx.md).")
        if self.sites:
            lines.append("Sitios: " + "; ".join(
                f"{one.name} ({one.server_name}{', predeterminado' if one.default_server else ''})"
                for one in self.sites) + "." + (" El certificado de [nginx] debe cubrir todos "
                                                "esos nombres." if self.tls else ""))
        roots = ", ".join(str(one.root) for one in blocks)
        lines.append(f"Los procesos de nginx (www-data) deben poder leer {roots} y las "
                     f"carpetas que {'los' if self.sites else 'lo'} contienen.")
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

    def http_level(self) -> str:
        """Declared once for every ``server`` block (zone, log format, maps: one name each)."""
        blocks = self.sites or [self]
        return http_level([one.root for one in blocks], self.cfg.nginx.limit_req_rate,
                          dollar=any(one._dollar for one in blocks))

    def servers(self) -> str:
        console = console_server(self)
        if self.sites:
            return "\n".join(servers(one) for one in self.sites) + console
        return servers(self) + console
