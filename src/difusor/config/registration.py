"""Who answers for the difusor: ``[registro]``, the carta de intención's data (III.2), and
``[[personal]]``, the staff list the convocatoria asks for with the registration (II.3.a) and the
memoria técnica lists in its annexes."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from difusor.config.values import Section


class StaffMember(Section):
    name: str = Field(description="Nombre completo.")
    role: str = Field(description="Función en la operación, p. ej. «responsable técnico».")
    phone: str = Field("", description="Teléfono, con extensión si la hay.")
    email: str = Field("", description="Correo electrónico.")

    def contact(self) -> str:
        return " · ".join(v for v in (self.phone, self.email) if v)


class RegistrationSettings(Section):
    """``[registro]``: the carta de intención's fields (convocatoria III.2, a–h; the test and
    official URLs come from ``[sites]``) and what the authority needs to reach the SFTP."""

    institution: str = Field("", description="III.2.a: nombre del medio de comunicación o de la "
                             "institución académica.")
    entity: str = Field("", description="III.2.b: entidad federativa, p. ej. «Michoacán».")
    contact_name: str = Field("", description="III.2.c: nombre del contacto.")
    contact_email: str = Field("", description="III.2.d: correo electrónico del contacto.")
    contact_phone: str = Field("", description="III.2.e: teléfono del contacto.")
    work_phone: str = Field("", description="III.2.f: teléfono de trabajo.")
    work_extension: str = Field("", description="III.2.f: extensión del teléfono de trabajo.")
    ips: list[str] = Field(default_factory=list, description="III.2.g: dirección(es) IP de "
                           "registro, las del servidor que recibe los paquetes.")
    sftp_host: str = Field("", description="Nombre o IP con que la autoridad se conecta al SFTP; "
                           "vacío = la primera IP de registro.")
    sftp_port: int = Field(22, ge=1, le=65535, description="Puerto del sshd cuando recibe "
                           "OpenSSH ([dropfolder]); el SFTP embebido usa el de [sftp] listen.")
    host_key_files: list[str] = Field(
        default_factory=list, description="Llaves públicas del sshd cuando recibe OpenSSH "
        "([dropfolder]); vacío = /etc/ssh/ssh_host_*_key.pub.")

    @field_validator("ips")
    @classmethod
    def _ips(cls, v: list[str]) -> list[str]:
        for ip in v:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise ValueError(f"«{ip}» no es una dirección IP") from None
        return v
