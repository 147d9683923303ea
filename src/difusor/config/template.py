"""What the declaration produces besides validation: ``difusor init``'s file and the settings
reference of docs/configuracion.md (a test keeps the doc in step)."""

from __future__ import annotations

import json
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from difusor.config.model import DICT_SECTIONS, LIST_SECTIONS, SECTIONS
from difusor.config.operation import SimulacroWindow
from difusor.config.receive import SftpSettings
from difusor.config.site import SiteSettings, StateSettings, WebSettings
from difusor.config.sites import SiteEntry
from difusor.config.values import check_address, check_end, check_network


def render_default(
    *, web_listen: str = "127.0.0.1:8080", sftp_listen: str = "127.0.0.1:2222", name: str = "PREP",
    tls_cert: str = "", tls_key: str = "", allow_from: list[str] | None = None,
    operation_end: str | None = None, operation_start: str = "",
    simulacros: list[SimulacroWindow] | None = None, sites: dict[str, SiteEntry] | None = None,
) -> str:
    """The file ``difusor init`` writes: the contract's sections with their defaults (and the
    embedded server's certificate, when ``tls_cert``/``tls_key`` are given: HTTPS). The two
    settings an operator must not forget carry a comment: ``[sftp] allow_from`` and
    ``[operation] end`` (a section only when ``operation_end`` is given, "" included; otherwise
    a commented example, so a caller may still append its own ``[operation]``). ``sites`` and
    the calendar (``operation_start``, ``simulacros``) are written as tables when given, as a
    commented example otherwise."""
    check_address(web_listen)
    check_address(sftp_listen)
    networks = [check_network(n) for n in allow_from or []]
    for moment in (operation_end or "", operation_start, *(
            m for w in simulacros or [] for m in (w.start, w.end))):
        check_end(moment)
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
        + _render_operation(operation_end, operation_start, simulacros or [])
        + (_render_sites(sites) if sites else _SITES_EXAMPLE)
    )


# The convocatoria's two URLs and its calendar (III.2.h, I.11), ready to uncomment.
_SITES_EXAMPLE = """
# Sitio de prueba y sitio oficial (convocatoria III.2.h; ver docs/sitios.md). Sin [sites], un solo
# sitio. Los paquetes de un simulacro van al de prueba; desde el inicio (start), al oficial.
# [sites.prueba]
# role = "prueba"
# url = "https://prueba.prep.example.mx"
# [sites.oficial]
# role = "oficial"
# url = "https://prep.example.mx"
#
# Calendario (Irimbo 2024): en [operation], el inicio de la publicación oficial,
#   start = "2024-12-08T18:00:00-06:00"
# y cada simulacro (I.11; el último, el 1 de diciembre):
# [[operation.simulacros]]
# name = "Último simulacro"
# start = "2024-12-01T09:00:00-06:00"
# end = "2024-12-01T14:00:00-06:00"
"""


def _render_operation(end: str | None, start: str, simulacros: list[SimulacroWindow]) -> str:
    note = ("# Fin de la operación (ISO 8601 con zona): el monitor deja de esperar cortes y el "
            "sitio\n# debe seguir en línea keep_hours más (convocatoria I.2); vacío = sin fecha.\n")
    if end is None and not start and not simulacros:
        return note + '# [operation]\n# end = "2024-12-09T20:00:00-06:00"\n'
    text = note + "[operation]\n"
    if start:
        text += f"# Inicio de la publicación oficial: desde aquí los paquetes van al sitio oficial.\n" \
                f"start = {_q(start)}\n"
    text += f"end = {_q(end or '')}\n"
    for window in simulacros:
        text += ("\n# Un simulacro (convocatoria I.11): sus paquetes van al sitio de prueba.\n"
                 f"[[operation.simulacros]]\nname = {_q(window.name)}\n"
                 f"start = {_q(window.start)}\nend = {_q(window.end)}\n")
    return text


def _render_sites(sites: dict[str, SiteEntry]) -> str:
    text = ("\n# Sitio de prueba y sitio oficial (convocatoria III.2.h; ver docs/sitios.md): cada "
            "uno con su\n# estado en state/sites/NOMBRE. Los paquetes de un simulacro van al de "
            "prueba; desde el inicio\n# de la publicación ([operation] start), al oficial.\n")
    for name, entry in sites.items():
        text += f"[sites.{name}]\nrole = {_q(entry.role)}\nurl = {_q(entry.url)}\n"
        if entry.hosts:
            text += f"hosts = [{', '.join(_q(h) for h in entry.hosts)}]\n"
        if entry.name:
            text += f"name = {_q(entry.name)}\n"
    return text


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def settings_reference() -> str:
    """docs/configuracion.md's reference section, generated from the declaration."""
    lines = ["| clave | valor por omisión | descripción |", "|---|---|---|"]
    tables: list[tuple[str, tuple[type[BaseModel], ...]]] = []

    def section(prefix: str, model: type[BaseModel]) -> None:
        for key, field in model.model_fields.items():
            default = field.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):  # a sub-table such as [alerts.email]
                section(f"{prefix}.{key}", type(default))
                continue
            item = _list_model(field.annotation)
            if item is not None:  # an array of tables such as [[monitor.targets]]
                tables.append((f"{prefix}.{key}", (item,)))
                continue
            lines.append(f"| `{prefix}.{key}` | `{_shown(default)}` | {field.description or ''} |")

    for name, model in SECTIONS.items():
        section(name, model)
    for name, models in [*LIST_SECTIONS.items(), *tables]:
        lines += _entry_rows(name, models)
    for name, model in DICT_SECTIONS.items():
        for key, field in model.model_fields.items():
            # A sub-table (a feed's [sftp]) takes the keys of the section of the same name.
            shown = "tabla" if key in SECTIONS else _default_cell(field)
            lines.append(f"| `[{name}.NOMBRE] {key}` | {shown} | {field.description or ''} |")
    return "\n".join(lines) + "\n"


def _entry_rows(name: str, models: tuple[type[BaseModel], ...]) -> list[str]:
    """One row per key of an array of tables; a key only some kinds take names them first."""
    kinds: dict[tuple[str, str, str], list[str]] = {}  # (key, default, description) → kinds
    for model in models:
        kind = model.model_fields.get("kind")
        tag = str(get_args(kind.annotation)[0]) if kind and len(models) > 1 else ""
        for key, field in model.model_fields.items():
            kinds.setdefault((key, _default_cell(field), field.description or ""), []).append(tag)
    rows = []
    for (key, shown, description), who in kinds.items():
        prefix = "" if len(who) == len(models) else f"{', '.join(who)}: "
        rows.append(f"| `[[{name}]] {key}` | {shown} | {prefix}{description} |")
    return rows


def _default_cell(field: FieldInfo) -> str:
    return "—" if field.is_required() else f"`{_shown(field.get_default(call_default_factory=True))}`"


def _shown(default: Any) -> str:
    return _q(default) if isinstance(default, str) else json.dumps(default)


def _list_model(annotation: Any) -> type[BaseModel] | None:
    if get_origin(annotation) is list:
        (arg,) = get_args(annotation)
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None
