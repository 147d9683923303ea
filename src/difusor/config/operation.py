"""Watching and running the night: ``[monitor]`` (and its ``[[monitor.targets]]``),
``[alerts]`` and ``[operation]``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from difusor.config.values import Section, Url, check_address, check_end


class MonitorTarget(Section):
    name: str = Field(description="Nombre del objetivo (tablero, incidentes).")
    url: Url = Field(description="URL base que se sondea, p. ej. https://prep.example.mx.")
    public: bool = Field(False, description="Cuenta para la disponibilidad del sitio público "
                         "(la URL a través del CDN).")
    ca_file: str = Field("", description="CA a confiar para este objetivo (vacío = sistema).")


DISK_THRESHOLDS = ("disk_warn_gb", "disk_warn_percent", "disk_critical_gb",
                   "disk_warn_inodes_percent", "disk_critical_inodes_percent")


class MonitorSettings(Section):
    enabled: bool = Field(True, description="Sondear con «difusor run».")
    interval: float = Field(30.0, ge=1, description="Segundos entre sondeos.")
    timeout: float = Field(10.0, gt=0, description="Segundos máximos por petición de sondeo.")
    fail_after: int = Field(3, ge=1, description="Fallos seguidos que abren un incidente.")
    recover_after: int = Field(2, ge=1, description="Éxitos seguidos que lo resuelven.")
    sample: int = Field(5, ge=0, description="Archivos por sondeo comparados con el manifiesto "
                        "(además de main.json), rotando.")
    degraded_ms: float = Field(2000.0, gt=0, description="Latencia que cuenta como degradada.")
    disk_warn_gb: float = Field(
        25.0, ge=0, description="Aviso (incidente «disco casi lleno», severidad menor) cuando un "
        "volumen donde escribe el difusor (estado, almacén, registros, cuarentena, registro de "
        "nginx) tiene menos de estos GB libres. 0 = sin este umbral.")
    disk_warn_percent: float = Field(
        10.0, ge=0, le=100, description="Aviso también cuando queda menos de este porcentaje "
        "libre del volumen. 0 = sin este umbral.")
    disk_critical_gb: float = Field(
        20.0, ge=0, description="Crítico por debajo de estos GB libres: el mínimo que exige la "
        "convocatoria (II.1.c). 0 = sin este umbral.")
    disk_warn_inodes_percent: float = Field(
        10.0, ge=0, le=100, description="Aviso cuando queda menos de este porcentaje de inodos "
        "libres (cada archivo nuevo del almacén gasta uno). 0 = sin este umbral.")
    # 2 %: on a small volume (a 64 GB ext4 has ~4 M inodes) that is ~80,000 inodes, about what
    # one full package of ~20,000 files takes with its .gz/.br variants: the next may not fit.
    disk_critical_inodes_percent: float = Field(
        2.0, ge=0, le=100, description="Crítico por debajo de este porcentaje de inodos libres "
        "(en un volumen chico apenas cabe un paquete completo más). 0 = sin este umbral.")
    disk_min_free_mb: int | None = Field(
        None, ge=0, description="Obsoleta: usar disk_critical_gb. Si está (y disk_critical_gb "
        "no), vale como disk_critical_gb en MB; 0 apaga todos los umbrales de disco.")
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
        return check_address(v) if v else v

    @model_validator(mode="before")
    @classmethod
    def _old_disk_key(cls, data: Any) -> Any:
        """Files written before the per-volume thresholds keep working: their one minimum is
        the critical floor, and its 0 («no vigilar») turns every disk threshold off."""
        if not isinstance(data, dict) or data.get("disk_min_free_mb") is None:
            return data
        mb = data["disk_min_free_mb"]
        if not isinstance(mb, int | float) or isinstance(mb, bool):
            return data  # the field's own check says what is wrong
        data = dict(data)
        if mb == 0:
            for key in DISK_THRESHOLDS:
                data.setdefault(key, 0)
        else:
            data.setdefault("disk_critical_gb", mb / 1024)
        return data

    targets: list[MonitorTarget] = Field(
        default_factory=list, description="[[monitor.targets]]: qué se sondea; vacío = el "
        "servidor embebido.")


class WebhookSettings(Section):
    url: str = Field(description="URL que recibe el aviso (POST).")
    format: Literal["json", "slack", "telegram"] = Field(
        "json", description="Cuerpo: JSON genérico, Slack ({text}) o Telegram (chat_id, text).")
    chat_id: str = Field("", description="telegram: chat al que se envía.")


class EmailSettings(Section):
    host: str = Field("", description="Servidor SMTP; vacío = sin correo.")
    port: int = Field(25, ge=1, le=65535, description="Puerto SMTP.")
    starttls: bool = Field(False, description="Usar STARTTLS.")
    user: str = Field("", description="Usuario SMTP (vacío = sin autenticación).")
    password_env: str = Field("", description="Variable de entorno con la contraseña SMTP.")
    sender: str = Field("difusor@localhost", description="Remitente.")
    to: list[str] = Field(default_factory=list, description="Destinatarios.")


class AlertSettings(Section):
    min_interval: float = Field(300.0, ge=0, description="Segundos mínimos entre avisos del "
                                "mismo incidente (la recuperación siempre se avisa).")
    webhooks: list[WebhookSettings] = Field(default_factory=list,
                                            description="[[alerts.webhooks]]: avisos por HTTP.")
    email: EmailSettings = EmailSettings()


class SimulacroWindow(Section):
    name: str = Field("", description="Nombre, p. ej. «Tercer simulacro».")
    start: str = Field(description="Inicio (ISO 8601 con zona), p. ej. 2024-12-01T09:00:00-06:00.")
    end: str = Field(description="Fin (ISO 8601 con zona).")

    @field_validator("start", "end")
    @classmethod
    def _moment(cls, v: str) -> str:
        if not v:
            raise ValueError("falta la fecha")
        return check_end(v)


class OperationSettings(Section):
    start: str = Field("", description="Inicio de la publicación oficial (ISO 8601), p. ej. "
                       "2024-12-08T18:00:00-06:00: desde aquí los paquetes van al sitio oficial "
                       "y cuenta la memoria técnica («difusor report»); vacío = desde el primer "
                       "dato registrado.")
    end: str = Field("", description="Fin de la operación (ISO 8601), p. ej. "
                     "2024-12-09T20:00:00-06:00; vacío = sin fecha.")
    keep_hours: float = Field(24.0, ge=0, description="Horas que el sitio debe seguir en línea "
                              "después del fin (convocatoria I.2).")
    authority: str = Field("", description="Autoridad que encarga el PREP, para la portada de "
                           "la memoria técnica, p. ej. Instituto Electoral de Michoacán.")
    election: str = Field("", description="Elección, para la portada de la memoria técnica, p. "
                          "ej. Proceso Electoral Local Extraordinario Irimbo 2024.")

    simulacros: list[SimulacroWindow] = Field(
        default_factory=list, description="[[operation.simulacros]]: ventanas de los simulacros "
        "(convocatoria I.11); sus paquetes van al sitio de prueba.")

    @field_validator("start", "end")
    @classmethod
    def _end(cls, v: str) -> str:
        return check_end(v)
