"""Watching and running the night: ``[monitor]`` (and its ``[[monitor.targets]]``),
``[alerts]`` and ``[operation]``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from difusor.config.values import Section, Url, check_address, check_end


class MonitorTarget(Section):
    name: str = Field(description="Nombre del objetivo (tablero, incidentes).")
    url: Url = Field(description="URL base que se sondea, p. ej. https://prep.example.mx.")
    public: bool = Field(False, description="Cuenta para la disponibilidad del sitio público "
                         "(la URL a través del CDN).")
    ca_file: str = Field("", description="CA a confiar para este objetivo (vacío = sistema).")


class MonitorSettings(Section):
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
        return check_address(v) if v else v
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
