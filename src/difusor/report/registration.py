"""The registration kit (convocatoria III.2 and II.3.a): what the authority asks for before the
election, gathered from the configuration — never invented.

``kit(cfg)`` is the whole document as a dict (what ``register --json`` prints): the carta de
intención's data sheet (III.2 a–h), the SFTP connection sheet the authority needs to reach the
receiver (host, port, user, host-key fingerprints as ``ssh-keygen -lf`` prints them, allowed
addresses, how to test it), the staff list and the components. Every field the convocatoria
requires and the file does not have is in ``faltantes`` with the key to fill, and shown as
missing in the document.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncssh

from difusor.config import Config, parse_address
from difusor.receive.sftp.keyfiles import host_key
from difusor.report.diagram import components

OPENSSH_HOST_KEYS = "/etc/ssh/ssh_host_*_key.pub"
HTML_NAME = "registro-difusor.html"
PDF_NAME = "registro-difusor.pdf"


@dataclass(frozen=True)
class Item:
    clause: str  # where the convocatoria asks for it
    label: str
    key: str  # the difusor.toml key that holds it
    value: str

    def row(self) -> dict[str, Any]:
        return {"inciso": self.clause, "dato": self.label, "clave": self.key,
                "valor": self.value or None}


def _site_url(cfg: Config, role: str) -> tuple[str, str]:
    """(URL, key) of the test or official site: ``[sites]`` when it has one with that role; a
    difusor without ``[sites]`` has one site, the official one."""
    for name, entry in cfg.sites.items():
        if entry.role == role:
            return str(entry.url), f"sites.{name}.url"
    if not cfg.sites and role == "oficial":
        return str(cfg.site.url), "site.url"
    return "", f"sites.{role}.url (role = \"{role}\")"


def letter(cfg: Config) -> list[Item]:
    """The carta de intención's fields, III.2 a–h, in the convocatoria's order."""
    r = cfg.registro
    phone = r.work_phone + (f" ext. {r.work_extension}" if r.work_phone and r.work_extension
                            else "")
    test, test_key = _site_url(cfg, "prueba")
    official, official_key = _site_url(cfg, "oficial")
    return [
        Item("III.2.a", "Nombre del medio de comunicación o institución académica",
             "registro.institution", r.institution),
        Item("III.2.b", "Entidad", "registro.entity", r.entity),
        Item("III.2.c", "Nombre del contacto", "registro.contact_name", r.contact_name),
        Item("III.2.d", "Correo electrónico del contacto", "registro.contact_email",
             r.contact_email),
        Item("III.2.e", "Teléfono del contacto", "registro.contact_phone", r.contact_phone),
        Item("III.2.f", "Teléfono de trabajo con extensión",
             "registro.work_phone y registro.work_extension",
             phone if r.work_phone and r.work_extension else ""),
        Item("III.2.g", "Dirección IP de registro", "registro.ips", ", ".join(r.ips)),
        Item("III.2.h", "Sitio de publicación de prueba", test_key, test),
        Item("III.2.h", "Sitio de publicación oficial", official_key, official),
    ]


def _fingerprints(paths: list[Path]) -> list[dict[str, str]]:
    out = []
    for path in paths:
        try:
            key = asyncssh.read_public_key(path)
        except (OSError, asyncssh.KeyImportError, ValueError):
            continue
        out.append({"tipo": key.get_algorithm(), "huella": key.get_fingerprint("sha256"),
                    "archivo": str(path),
                    "llave": key.export_public_key("openssh").decode("ascii").strip()})
    return out


def host_key_fingerprints(cfg: Config) -> list[dict[str, str]]:
    """The SFTP server's public host keys: the embedded server's (made now if it does not exist
    yet: the authority needs its fingerprint before the first night) or OpenSSH's."""
    if cfg.sftp.enabled:
        private = cfg.path(cfg.sftp.host_key)
        key = host_key(private).convert_to_public()
        return [{"tipo": key.get_algorithm(), "huella": key.get_fingerprint("sha256"),
                 "archivo": str(private),
                 "llave": key.export_public_key("openssh").decode("ascii").strip()}]
    files = cfg.registro.host_key_files or sorted(glob.glob(OPENSSH_HOST_KEYS))
    return _fingerprints([cfg.path(f) for f in files])


def sftp_sheet(cfg: Config) -> dict[str, Any]:
    r = cfg.registro
    embedded = cfg.sftp.enabled
    host = r.sftp_host or (r.ips[0] if r.ips else "")
    port = parse_address(cfg.sftp.listen)[1] if embedded else r.sftp_port
    keys = host_key_fingerprints(cfg)
    target = f"{cfg.sftp.user}@{host or 'HOST'}"
    return {
        "receptor": "SFTP embebido del difusor" if embedded else
                    "OpenSSH (internal-sftp, cuenta generada por difusor sftp-config)",
        "host": host or None, "puerto": port, "usuario": cfg.sftp.user,
        "llaves": keys,
        "origenes_permitidos": [str(n) for n in cfg.sftp.allow_from],
        "carpeta": "/" if embedded else "/entrada",
        "prueba": [
            f"ssh-keyscan -p {port} {host or 'HOST'} | ssh-keygen -lf -",
            f"sftp -P {port} -i LLAVE_PRIVADA {target}",
            f"difusor probe --sftp-speed {host or 'HOST'}:{port} --user {cfg.sftp.user} "
            "--key LLAVE_PRIVADA",
        ],
    }


def integrity_sheet(cfg: Config) -> dict[str, Any]:
    """The key that signs the public chain of cortes (made now if missing): with its
    fingerprint the authority, or anyone, pins ``difusor verify --key``."""
    from difusor.integrity.published import CHAIN_PATH
    from difusor.integrity.signing import fingerprint, key_path, load_or_create, public_b64

    public = public_b64(load_or_create(key_path(cfg)))
    urls = [str(e.url) for e in cfg.sites.values()] or [str(cfg.site.url)]
    return {"algoritmo": "Ed25519", "llave_publica": public, "huella": fingerprint(public),
            "cadenas": [u.rstrip("/") + CHAIN_PATH for u in urls]}


def missing(cfg: Config, sheet: dict[str, Any] | None = None) -> list[dict[str, str]]:
    """What the convocatoria requires and the file lacks: (what, the key to fill)."""
    sheet = sheet or sftp_sheet(cfg)
    out = [{"dato": f"{i.clause} {i.label}", "clave": i.key} for i in letter(cfg) if not i.value]
    if not sheet["host"]:
        out.append({"dato": "SFTP: nombre o IP con que se conecta la autoridad",
                    "clave": "registro.sftp_host (o registro.ips)"})
    if not sheet["llaves"]:
        where = ("sftp.host_key (se genera al iniciar difusor run)" if cfg.sftp.enabled
                 else "registro.host_key_files")
        out.append({"dato": "SFTP: llave pública del servidor (huella)", "clave": where})
    if not cfg.personal:
        out.append({"dato": "II.3.a Listado del personal", "clave": "[[personal]]"})
    return out


def kit(cfg: Config, now: datetime | None = None) -> dict[str, Any]:
    sheet = sftp_sheet(cfg)
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return {
        "generado": moment.isoformat(timespec="seconds"),
        "sitio": {"nombre": cfg.site.name, "autoridad": cfg.operation.authority or None,
                  "eleccion": cfg.operation.election or None,
                  "dominio": urlsplit(str(cfg.site.url)).hostname},
        "carta": [i.row() for i in letter(cfg)],
        "sftp": sheet,
        "personal": [{"nombre": p.name, "rol": p.role, "telefono": p.phone or None,
                      "correo": p.email or None} for p in cfg.personal],
        "componentes": components(cfg),
        "integridad": integrity_sheet(cfg),
        "faltantes": missing(cfg, sheet),
    }


def write_kit(doc: dict[str, Any], cfg: Config, outdir: Path) -> list[Path]:
    """``outdir/registro-difusor.{html,pdf}`` with the service diagram inline."""
    from zoneinfo import ZoneInfo

    from difusor.report.annexes import write_atomic
    from difusor.report.diagram import service_diagram
    from difusor.report.render import TEMPLATES, environment, inline_svg, write_pdf

    outdir.mkdir(parents=True, exist_ok=True)
    env = environment(ZoneInfo(cfg.site.timezone))
    html = env.get_template("registro.html").render(
        doc=doc, diagram=inline_svg(service_diagram(cfg)),
        created=datetime.fromisoformat(doc["generado"]).strftime("%Y-%m-%dT%H:%M:%SZ"),
        css=(TEMPLATES / "memoria.css").read_text(encoding="utf-8"))
    html_path, pdf_path = outdir / HTML_NAME, outdir / PDF_NAME
    write_atomic(html_path, html.encode("utf-8"))
    write_pdf(html, pdf_path, [], doc)
    return [html_path, pdf_path]
