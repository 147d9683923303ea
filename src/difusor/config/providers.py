"""Each provider driver's own settings: one small model per ``[[origins]]`` kind and per ``[[cdn]]``
kind, chosen by ``kind`` (a discriminated union), so a key belongs to the kind that uses it.

A model says what its driver cannot work without through ``problem()`` (one Spanish line, or
None). Origins are checked when difusor.toml is loaded (``origins_problem``), before any package
is read. A ``[[cdn]]`` is checked when its purger is built: an entry that only names its kind is
still meaningful (nginx trusts that CDN's client-IP header), its purge settings may come later.
The drivers (``publish/origins``, ``publish/cdn``) annotate their ``settings`` with these models.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from difusor.config.values import Section

# -- origins ------------------------------------------------------------------------------------

_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/-]+$")
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:-]*$")  # a name, IPv4 or IPv6: never an option
_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_ORIGIN_KIND = "Tipo de origen: «local», «nginx», «ssh» o «s3»."


class OriginBase(Section):
    """What every origin kind takes."""

    name: str = Field(description="Nombre del origen (bitácora, tablero).")
    kind: str = Field(description=_ORIGIN_KIND)
    url: str = Field("", description="URL pública de este origen (para verificarlo).")
    retries: int = Field(3, ge=0, description="Reintentos antes de sacarlo de rotación.")
    backoff: float = Field(
        0.5, ge=0, le=30, description="Segundos de espera antes del primer reintento; se "
        "duplican en cada uno (un origen ya fuera de rotación se intenta una sola vez).")
    timeout: float = Field(
        60.0, gt=0, description="Segundos máximos de cada intento de transferencia (la conexión "
        "se espera a lo más 10 s).")

    def problem(self) -> str | None:
        """Why the driver could not use these settings, or None."""
        return None

    def _needs(self, *keys: str) -> str | None:
        missing = [key for key in keys if not getattr(self, key)]
        return f"un origen {self.kind} necesita {', '.join(missing)}" if missing else None


class LocalOriginSettings(OriginBase):
    kind: Literal["local"] = Field(description=_ORIGIN_KIND)


class NginxOriginSettings(OriginBase):
    kind: Literal["nginx"] = Field(description=_ORIGIN_KIND)
    root: str = Field("", description="carpeta de cortes en este equipo.")

    def problem(self) -> str | None:
        return self._needs("root")


class SshOriginSettings(OriginBase):
    kind: Literal["ssh"] = Field(description=_ORIGIN_KIND)
    host: str = Field("", description="servidor remoto.")
    port: int = Field(22, ge=1, le=65535, description="puerto.")
    user: str = Field("", description="usuario remoto.")
    key: str = Field("", description="llave privada.")
    known_hosts: str = Field(
        "", description="archivo known_hosts con la llave del servidor remoto; vacío = el del "
        "usuario.")
    root: str = Field("", description="carpeta remota.")

    def problem(self) -> str | None:
        missing = self._needs("host", "root")
        if missing:
            return missing
        root = self.root.rstrip("/")
        # Both end up in ssh's and rsync's command lines: nothing there may read as an option.
        if not _SAFE_PATH.match(root) or "/../" in root + "/":
            return ("root debe ser una ruta absoluta simple del servidor remoto (letras, dígitos, "
                    f". _ - /), no «{self.root}»")
        if not _HOST.match(self.host) or (self.user and not _USER.match(self.user)):
            return f"host «{self.host}» o user «{self.user}» no son un nombre válido"
        return None


class S3OriginSettings(OriginBase):
    kind: Literal["s3"] = Field(description=_ORIGIN_KIND)
    bucket: str = Field("", description="bucket.")
    prefix: str = Field("", description="prefijo dentro del bucket.")
    region: str = Field("", description="región.")
    endpoint_url: str = Field("", description="URL del servicio compatible con S3.")

    def problem(self) -> str | None:
        return self._needs("bucket")


OriginSettings = Annotated[
    LocalOriginSettings | NginxOriginSettings | SshOriginSettings | S3OriginSettings,
    Field(discriminator="kind"),
]
ORIGIN_KINDS: tuple[type[OriginBase], ...] = (
    LocalOriginSettings, NginxOriginSettings, SshOriginSettings, S3OriginSettings)


def origins_problem(origins: Sequence[OriginBase]) -> str | None:
    """What is wrong with ``[[origins]]`` as a whole (one Spanish line), or None."""
    seen: set[str] = set()
    for n, s in enumerate(origins, start=1):
        where = f"[[origins]] n.º {n} ({s.name})"
        if s.name in seen:
            return f"{where}: el nombre «{s.name}» ya lo usa otro origen"
        seen.add(s.name)
        problem = s.problem()
        if problem:
            return f"{where}: {problem}"
    if sum(s.kind == "local" for s in origins) > 1:
        return "[[origins]]: solo puede haber un origen local (el servidor embebido)"
    return None


# -- CDN ----------------------------------------------------------------------------------------

_CDN_KIND = "Proveedor: «varnish», «cloudflare», «fastly», «cloudfront» o «akamai»."


class CdnBase(Section):
    """What every CDN takes: the proof at the edge and the purge template's knobs."""

    name: str = Field("", description="Nombre de la CDN (bitácora).")
    kind: str = Field(description=_CDN_KIND)
    edge_url: str = Field("", description="URL pública a través de la CDN (para comprobar que "
                          "ya sirve los bytes nuevos).")
    targeted_seconds: int = Field(
        0, ge=0, le=60, description="Segundos que la CDN puede guardar main.json "
        "(CDN-Cache-Control / Surrogate-Control); 0 = nada.")
    batch_size: int = Field(0, ge=0, le=3000, description="URL por solicitud de purga; 0 = lo "
                            "que admite el proveedor (cloudflare 30, cloudfront 3000).")
    retries: int = Field(5, ge=0, le=20, description="Reintentos ante un 429 (respetando "
                         "Retry-After) o una falla pasajera de la API.")
    timeout: float = Field(15.0, gt=0, description="Segundos máximos de cada llamada de purga.")
    verify_timeout: float = Field(
        30.0, ge=0, description="Segundos que se espera a que edge_url sirva los bytes nuevos "
        "tras purgar; 0 = no comprobar.")
    verify_sample: int = Field(20, ge=0, description="URL comprobadas en el borde además de "
                               "main.json cuando cambian más.")

    @property
    def label(self) -> str:
        """How the operator's lines name this CDN: its name, or its kind when it has none."""
        return self.name or self.kind

    def problem(self) -> str | None:
        """Why the purger could not use these settings, or None (secrets are read apart)."""
        return None


class _ApiCdn(CdnBase):
    api_url: str = Field("", description="URL base de la API (vacío = la oficial).")


class _TokenCdn(_ApiCdn):
    token_env: str = Field("", description="Variable de entorno con el token o secreto de la "
                           "API.")


class VarnishCdnSettings(CdnBase):
    kind: Literal["varnish"] = Field(description=_CDN_KIND)
    purge_url: str = Field("", description="URL de purga (por omisión, edge_url).")

    def problem(self) -> str | None:
        return None if self.purge_url or self.edge_url else "varnish necesita purge_url o edge_url"


class CloudflareCdnSettings(_TokenCdn):
    kind: Literal["cloudflare"] = Field(description=_CDN_KIND)
    zone_id: str = Field("", description="zona.")

    def problem(self) -> str | None:
        if self.zone_id:
            return None
        return "cloudflare necesita zone_id (el ID de la zona, en el panel de Cloudflare › Resumen)"


class FastlyCdnSettings(_TokenCdn):
    kind: Literal["fastly"] = Field(description=_CDN_KIND)
    service_id: str = Field("", description="servicio (lo necesita «difusor purge --all»).")
    soft: bool = Field(False, description="purga suave (marca la copia como vieja en vez de "
                       "borrarla).")


class CloudFrontCdnSettings(_TokenCdn):
    kind: Literal["cloudfront"] = Field(description=_CDN_KIND)
    distribution_id: str = Field("", description="distribución.")

    def problem(self) -> str | None:
        return None if self.distribution_id else "cloudfront necesita distribution_id"


class AkamaiCdnSettings(_ApiCdn):
    kind: Literal["akamai"] = Field(description=_CDN_KIND)
    network: Literal["production", "staging"] = Field(
        "production", description="red de Fast Purge.")
    edgerc: str = Field("~/.edgerc", description="archivo .edgerc con las credenciales EdgeGrid "
                        "(y el host de la API).")
    edgerc_section: str = Field("default", description="sección del .edgerc.")
    cp_code: str = Field("", description="código CP que invalida «difusor purge --all».")


CdnSettings = Annotated[
    VarnishCdnSettings | CloudflareCdnSettings | FastlyCdnSettings | CloudFrontCdnSettings
    | AkamaiCdnSettings,
    Field(discriminator="kind"),
]
CDN_KINDS: tuple[type[CdnBase], ...] = (
    VarnishCdnSettings, CloudflareCdnSettings, FastlyCdnSettings, CloudFrontCdnSettings,
    AkamaiCdnSettings)
