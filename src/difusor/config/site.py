"""The site itself and how it is served: ``[site]``, ``[web]``, ``[state]``, ``[store]``,
``[nginx]`` and the extra ``[[headers]]`` rules."""

from __future__ import annotations

import re
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from difusor.config.values import Address, Section, Url


class SiteSettings(Section):
    name: str = Field("PREP", description="Nombre del sitio, texto libre.")
    url: Url = Field("http://127.0.0.1:8080", description="URL pública del sitio.")
    hosts: list[str] = Field(default_factory=list, description="Nombres (encabezado Host) del "
                             "sitio; vacío = cualquiera. Con [sites], cada sitio lleva los suyos.")
    portal_origins: list[str] = Field(
        default_factory=list, description="Orígenes del portal del medio (p. ej. "
        "https://www.medio.mx) que pueden leer /_difusor/status.json (CORS) para el aviso del "
        "corte; vacío = ninguno.")
    timezone: str = Field(
        "America/Mexico_City",
        description="Zona horaria de los cortes cuando el dato no trae la suya.",
    )

    @field_validator("portal_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        for origin in v:
            if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", origin):
                raise ValueError(f"«{origin}» no es un origen (https://host o https://host:puerto, "
                                 "sin ruta ni / final)")
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"zona horaria desconocida «{v}»") from None
        return v


class WebSettings(Section):
    listen: Address = Field(
        "127.0.0.1:8080", description="Dirección HOST:PUERTO del servidor web embebido."
    )
    workers: int = Field(2, ge=1, le=64, description="Procesos que atienden peticiones.")
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="Bucle de eventos de cada proceso (uvloop: algo más rápido)."
    )
    access_log: bool = Field(True, description="Registrar cada visita (líneas JSON).")
    access_log_max_mb: int = Field(
        256, ge=0, description="Al pasar de este tamaño (MB) el registro de accesos se rota "
        "(access.log.AAAAMMDD-HHMMSS-PID, nunca se borra; la analítica lo termina de leer). "
        "0 = nunca (si lo rota logrotate).")
    memory_max_file: int = Field(
        8 * 1024 * 1024,
        ge=0,
        description="Archivos de hasta este tamaño (bytes) se sirven desde memoria; "
        "los mayores, desde disco.",
    )
    tls_cert: str = Field("", description="Certificado PEM (cadena completa): con tls_key, el "
                          "servidor embebido habla HTTPS.")
    tls_key: str = Field("", description="Llave privada PEM del certificado.")


class StateSettings(Section):
    dir: str = Field(
        "state", description="Carpeta de estado: bitácora, almacén, buzón, cuarentena, registros."
    )


class IntegritySettings(Section):
    key: str = Field("keys/integrity_ed25519", description="Llave privada Ed25519 con que se "
                     "firma cada entrada de la cadena pública de cortes (se crea si no existe).")
    page_size: int = Field(1000, ge=10, le=100_000, description="Entradas por página de "
                           "/_difusor/cortes.json (las páginas llenas ya no cambian).")


class StoreSettings(Section):
    gzip_level: int = Field(6, ge=1, le=9, description="Nivel de las variantes .gz.")
    brotli_quality: int = Field(5, ge=0, le=11, description="Calidad de las variantes .br.")
    compress_min_bytes: int = Field(
        256, ge=0, description="Archivos más pequeños no llevan variantes comprimidas."
    )
    fsync: bool = Field(True, description="Forzar a disco antes de activar (recomendado).")


class NginxSettings(Section):
    server_name: str = Field("_", description="server_name de nginx (el dominio público).")
    listen: int = Field(80, ge=1, le=65535, description="Puerto HTTP (redirige a HTTPS si hay TLS).")
    listen_tls: int = Field(443, ge=1, le=65535, description="Puerto HTTPS.")
    tls_cert: str = Field("", description="Certificado PEM para nginx; vacío = solo HTTP.")
    tls_key: str = Field("", description="Llave privada PEM para nginx.")
    root: str = Field("", description="Carpeta del corte en línea que sirve nginx; vacío = "
                      "state/store/site.")
    access_log: str = Field("", description="Registro de accesos JSON de nginx; vacío = "
                            "state/logs/nginx-access.log.")
    real_ip_from: list[str] = Field(
        default_factory=list,
        description="Redes (CIDR) del CDN o balanceador cuya cabecera de IP real se cree.",
    )
    real_ip_header: str = Field(
        "", description="Cabecera con la IP real del cliente; vacío = la del primer [[cdn]] "
        "(CF-Connecting-IP, Fastly-Client-IP, …) o X-Forwarded-For.",
    )
    limit_req_rate: int = Field(50, ge=1, description="Peticiones por segundo por IP (limit_req).")
    limit_req_burst: int = Field(200, ge=0, description="Ráfaga tolerada por IP (limit_req).")
    hsts_seconds: int = Field(31536000, ge=0, description="Strict-Transport-Security max-age "
                              "(0 = sin HSTS).")
    acme_webroot: str = Field("", description="Carpeta de los retos HTTP-01 de ACME "
                              "(certbot --webroot), servida en /.well-known/acme-challenge/; "
                              "vacío = state/acme.")


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
_HEADER_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # controls but HTAB: CR, LF, NUL…


class HeaderRule(Section):
    match: str = Field(description="Patrón glob de ruta, p. ej. «*.json» o «json/*».")
    set: dict[str, str] = Field(description="Encabezados que se fijan en esas rutas.")

    @field_validator("set")
    @classmethod
    def _sendable(cls, v: dict[str, str]) -> dict[str, str]:
        # A server drops (or, worse, splits) a header it cannot send: refuse it here instead.
        for name, value in v.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"«{name}» no es un nombre de encabezado HTTP válido")
            if _HEADER_BAD_VALUE.search(value):
                raise ValueError(f"el valor de «{name}» lleva un salto de línea u otro carácter "
                                 "de control, que no se puede enviar en un encabezado")
        return v

