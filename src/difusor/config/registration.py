"""Who answers for the difusor: ``[[personal]]``, the staff list the convocatoria asks for with
the registration (II.3.a) and the memoria técnica lists in its annexes."""

from __future__ import annotations

from pydantic import Field

from difusor.config.values import Section


class StaffMember(Section):
    name: str = Field(description="Nombre completo.")
    role: str = Field(description="Función en la operación, p. ej. «responsable técnico».")
    phone: str = Field("", description="Teléfono, con extensión si la hay.")
    email: str = Field("", description="Correo electrónico.")

    def contact(self) -> str:
        return " · ".join(v for v in (self.phone, self.email) if v)
