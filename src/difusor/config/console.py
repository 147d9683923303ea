"""``[console]``: the operator's live page served by ``difusor run`` (see docs/consola.md)."""

from __future__ import annotations

from pydantic import Field

from difusor.config.values import Address, Section


class ConsoleSettings(Section):
    enabled: bool = Field(True, description="Servir la consola con «difusor run» en cuanto exista "
                          "un usuario («difusor console user add NOMBRE»).")
    listen: Address = Field("127.0.0.1:8081", description="HOST:PUERTO de la consola. Déjala en "
                        "loopback: desde otra máquina, por nginx con TLS (server_name) o un "
                        "túnel SSH.")
    server_name: str = Field("", description="Nombre con que nginx-config la publica con TLS "
                             "(p. ej. consola.example.mx); vacío = no se genera.")
    session_hours: float = Field(12.0, gt=0, le=72, description="Horas que dura una sesión "
                                 "iniciada (toda la noche electoral).")
    login_attempts: int = Field(5, ge=1, description="Intentos fallidos de inicio de sesión "
                                "permitidos por dirección y usuario en login_window_minutes.")
    login_window_minutes: float = Field(15.0, gt=0, description="Ventana de los intentos "
                                        "fallidos; pasado el límite se espera a que venza.")

