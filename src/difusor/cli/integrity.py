"""``difusor verify URL``: the public proof of no modification, checked from anywhere, without
a configuration (integrity/verify.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from difusor.cli.kit import JsonOpt, err, out
from difusor.errors import DifusorError, ExitCode


def verify(
    url: Annotated[str, typer.Argument(help="URL pública del difusor, p. ej. "
                                       "https://prep.medio.mx (la que ve un visitante).")],
    package: Annotated[Path | None, typer.Option(
        "--package", help="Paquete original de la autoridad: comprobar que el manifiesto de su "
        "corte es su contenido.")] = None,
    sample: Annotated[int, typer.Option(
        "--sample", min=1, help="Archivos del corte en línea comparados con el manifiesto, al "
        "azar (main.json siempre).")] = 50,
    every: Annotated[bool, typer.Option("--all", help="Comparar todos los archivos.")] = False,
    key: Annotated[str | None, typer.Option(
        "--key", help="Huella (SHA256:…) o llave pública que debe firmar la cadena, p. ej. la "
        "del kit de registro.")] = None,
    timeout: Annotated[float, typer.Option(help="Segundos máximos por petición.", min=1)] = 30.0,
    as_json: JsonOpt = False,
) -> int:
    """Verifica que un difusor sirve sin modificar lo que publicó: su cadena firmada de
    cortes, el manifiesto del corte en línea y los archivos que entrega (sin configuración)."""
    from difusor.integrity.verify import verify_site

    if not url.startswith(("http://", "https://")):
        raise DifusorError(f"«{url}» no es una URL http:// o https://")
    if package is not None and not package.is_file():
        raise DifusorError(f"no existe el paquete {package}")
    report = verify_site(url, sample=None if every else sample, package=package, key=key,
                         timeout=timeout)
    if as_json:
        out.print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2), markup=False)
        return ExitCode.OK if report.ok else ExitCode.FAILURE
    if report.entries:
        out.print(f"cadena: {report.entries} entradas, llave {report.key}, cabeza "
                  f"{report.head[:16]}…", markup=False)
    if report.corte:
        out.print(f"corte en línea: {report.corte} ({report.files:,} archivos); "
                  f"comparados {report.checked:,}", markup=False)
    if report.package:
        p = report.package
        out.print(f"paquete {Path(p['archivo']).name}: sha256 {p['sha256'][:16]}…, "
                  f"{p['archivos']:,} archivos ({p['tipo']}), corte {p['corte'] or '—'}",
                  markup=False)
    for problem in report.problems:
        err.print(f"✘ {problem}", markup=False, soft_wrap=True)
    for m in report.mismatches:
        err.print(f"✘ /{m.path}: esperado {m.expected}, servido {m.served}", markup=False,
                  soft_wrap=True)
    if report.ok:
        out.print(f"✔ verificado en {report.seconds:.1f} s: la cadena es íntegra y lo servido "
                  "es lo publicado", markup=False)
        return ExitCode.OK
    err.print(f"✘ la verificación falló: {len(report.problems)} problemas, "
              f"{len(report.mismatches)} archivos distintos", markup=False)
    return ExitCode.FAILURE
