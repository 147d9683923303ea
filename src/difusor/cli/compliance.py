"""``difusor register`` (the registration kit, III.2 and II.3.a) and ``difusor check`` (the live
installation against section II, item by item, with its evidence)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from difusor import config as config_mod
from difusor.cli.kit import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonOpt,
    SiteOpt,
    err,
    ledger_for,
    out,
    site_view,
)
from difusor.errors import ExitCode

DEFAULT_KIT = Path("registro")


def register(
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Carpeta donde se escriben el PDF y el HTML.")] = DEFAULT_KIT,
    check_only: Annotated[bool, typer.Option(
        "--check", help="Solo revisar: termina con código 1 mientras falte un dato que pide la "
        "convocatoria (no escribe archivos).")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Imprimir los datos del registro en JSON, sin escribir archivos.")]
    = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> int:
    """Kit de registro: datos de la carta de intención, conexión SFTP para la autoridad
    (con la huella de la llave), diagrama del servicio y personal, en PDF y HTML."""
    from difusor.report.registration import kit, write_kit

    cfg = config_mod.load(config)
    doc = kit(cfg)
    missing = doc["faltantes"]
    if as_json:
        out.print(json.dumps(doc, ensure_ascii=False, indent=2), markup=False)
    elif not check_only:
        written = write_kit(doc, cfg, output)
        for path in written:
            out.print(f"escrito {path}", markup=False)
    for m in missing:
        err.print(f"falta: {m['dato']} → {m['clave']}", markup=False, soft_wrap=True)
    if missing:
        err.print(f"Faltan {len(missing)} datos que pide la convocatoria; complétalos en "
                  f"{config} y vuelve a correr «difusor register».", markup=False)
        return ExitCode.FAILURE if check_only else ExitCode.OK
    if check_only:
        out.print("Registro completo: están todos los datos que pide la convocatoria.",
                  markup=False)
    return ExitCode.OK


def check(
    html: Annotated[Path | None, typer.Option(
        "--html", help="Además, escribir el resultado en este archivo HTML.")] = None,
    sftp_size: Annotated[int, typer.Option(
        "--sftp-size", min=1, help="MB del archivo de prueba que se sube tres veces por SFTP "
        "para medir la velocidad (cuenta la mediana; nunca se publica).")] = 200,
    as_json: JsonOpt = False,
    site: SiteOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> int:
    """Revisa la instalación en vivo contra la sección II de la convocatoria: cada punto con
    ✔/✘/«no verificable desde aquí», su inciso y la evidencia medida."""
    from difusor.compliance.run import run_checks
    from difusor.compliance.show import html_page, lines

    root = config_mod.load(config)
    cfg = site_view(root, site)
    say = (lambda _line: None) if as_json else (
        lambda line: err.print(line, markup=False))
    with ledger_for(cfg) as ledger:
        result = run_checks(cfg, ledger, sftp_bytes=sftp_size * 10**6, receiver=root,
                            progress=say)
    if as_json:
        out.print(json.dumps(result.as_dict(), ensure_ascii=False, indent=2), markup=False)
    else:
        for line in lines(result):
            out.print(line, markup=False)
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(html_page(result, cfg), encoding="utf-8")
        if not as_json:
            out.print(f"escrito {html}", markup=False)
    return ExitCode.OK if result.passed else ExitCode.FAILURE
