"""What comes in and how it is read: ``[sftp]``, ``[receive]``, ``[dropfolder]``, ``[pull]``,
``[package]`` and ``[corte]``."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from difusor.config.values import MAIN_JSON, Address, Network, Section


class SftpSettings(Section):
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


class ReceiveSettings(Section):
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


class DropFolderSettings(Section):
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


class PullSettings(Section):
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


class PackageSettings(Section):
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


class CorteSettings(Section):
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

