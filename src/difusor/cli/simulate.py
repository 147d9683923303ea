"""``difusor simulate packages|attack``: the synthetic authority's packages, and a drill against
a loopback target reported in Spanish or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from difusor import config as config_mod
from difusor.cli.kit import DEFAULT_CONFIG, ConfigOpt, JsonOpt, err, out
from difusor.errors import DifusorError

if TYPE_CHECKING:
    from difusor.shield.drill import DrillReport

HELP = "Simulacros: paquetes sintéticos para ensayos y pruebas."


def packages(
    directory: Annotated[Path, typer.Argument(help="Carpeta donde escribir los paquetes.")],
    count: Annotated[int, typer.Option(help="Cuántos cortes.")] = 6,
    casillas: Annotated[int, typer.Option(help="Casillas de la elección sintética.")] = 24,
    fmt: Annotated[str, typer.Option("--format", help="zip o tar.gz.")] = "zip",
    sidecar: Annotated[bool, typer.Option(help="Escribir NOMBRE.sha256 junto a cada paquete.")]
    = True,
) -> None:
    """Escribe la serie de paquetes de la autoridad sintética: uno completo y luego incrementales."""
    from difusor.demo.election import SyntheticElection
    from difusor.demo.packages import write_package

    if fmt not in ("zip", "tar.gz"):
        raise DifusorError("--format debe ser zip o tar.gz")
    for n, corte in enumerate(SyntheticElection(casillas=casillas).cortes(count)):
        path = write_package(corte, directory, kind="full" if n == 0 else "incremental", fmt=fmt,
                             sidecar=sidecar)
        out.print(str(path))


_KIND_HELP = ("ip (una dirección a toda velocidad), distributed (200 direcciones), cachebust "
              "(consultas al azar en main.json), scan (rutas inexistentes), slow (slowloris), "
              "uarotate (una dirección que se hace pasar por CGNAT: 40 user agents de navegador "
              "a 150 pet/s)")


def attack(
    kind: Annotated[str, typer.Option("--kind", help=f"Tipo de ataque: {_KIND_HELP}.")],
    target: Annotated[str, typer.Option(
        "--target", help="URL del objetivo, solo loopback (127.0.0.0/8 o ::1); por omisión la "
        "de [web] listen.")] = "",
    duration: Annotated[float, typer.Option("--duration", help="Segundos del simulacro.")] = 30.0,
    attack_after: Annotated[float, typer.Option(
        "--attack-after", help="Segundos de calma antes del ataque.")] = 3.0,
    visitors: Annotated[int, typer.Option(
        "--visitors", help="Visitantes legítimos, cada uno con su dirección.")] = 50,
    cgnat_users: Annotated[int, typer.Option(
        "--cgnat-users", help="Usuarios detrás de UNA dirección (CGNAT), cada uno con su "
        "navegador; consultan main.json cada 60 s.")] = 500,
    attackers: Annotated[int, typer.Option(
        "--attackers", help="Direcciones atacantes (0 = la del tipo: 200 en distributed, 1 en "
        "los demás).")] = 0,
    connections: Annotated[int, typer.Option(
        "--connections", help="Conexiones por dirección atacante (0 = la del tipo).")] = 0,
    rate: Annotated[float, typer.Option(
        "--rate", help="Peticiones/s del atacante en total (0 = las del tipo: 150 en uarotate, "
        "sin tope en los demás).")] = 0.0,
    poll: Annotated[float, typer.Option(
        "--poll", help="Segundos entre consultas de main.json de cada visitante.")] = 5.0,
    as_json: JsonOpt = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Simulacro de ataque contra un objetivo en loopback, con visitantes legítimos (muchos
    detrás de una sola dirección) y la serie por segundo."""
    # Imported here: asyncio and the drill cost every other command ≈ 40 ms of start-up.
    import asyncio

    from difusor.shield.drill import KINDS, Drill, DrillPlan

    if kind not in KINDS:
        raise DifusorError(f"--kind debe ser uno de: {', '.join(KINDS)}")
    if not target:
        target = _target_from(config)
    for name, value in (("--visitors", visitors), ("--cgnat-users", cgnat_users),
                        ("--attackers", attackers), ("--connections", connections)):
        if not 0 <= value <= 5000:
            raise DifusorError(f"{name} va de 0 a 5000")
    if not 0 <= rate <= 100_000:
        raise DifusorError("--rate va de 0 a 100000 peticiones/s")
    plan = DrillPlan(kind=kind, target=target, duration=duration, attack_after=attack_after,
                     visitors=visitors, cgnat_users=cgnat_users, attackers=attackers or None,
                     connections=connections or None, rate=rate or None, poll=poll)
    drill = Drill(plan)  # checks the plan (loopback only) before anything is sent
    if not as_json:
        err.print(f"Simulacro «{kind}» contra {escape(target)} durante {duration:.0f} s "
                  f"(ataque desde el segundo {attack_after:.0f})…")
    report = asyncio.run(drill.run())
    if as_json:
        out.print_json(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        show(report)


def _target_from(config: Path) -> str:
    try:
        cfg = config_mod.load(config)
    except DifusorError:
        raise DifusorError(f"falta --target (y no pude leer {config} para usar [web] listen)"
                           ) from None
    host, port = config_mod.parse_address(cfg.web.listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def show(r: DrillReport) -> None:
    """The summary, then the per-second series (Spanish)."""
    contained = "no se contuvo" if r.containment_s is None else f"{r.containment_s} s"
    summary = Table(title=f"Simulacro «{r.kind}» contra {escape(r.target)}", show_header=False)
    summary.add_column("qué")
    summary.add_column("valor", justify="right")
    rows = [
        ("peticiones legítimas", f"{r.legit_requests:,}"),
        ("éxito legítimo", f"{r.legit_success_pct:.3f} %"),
        ("visitantes rechazados alguna vez", f"{r.visitors_refused}"),
        ("usuarios CGNAT activos / rechazados alguna vez",
         f"{r.cgnat_users_active} / {r.cgnat_users_refused}"),
        ("direcciones atacantes", f"{r.attackers}"),
        ("conexiones lentas abiertas / retenidas (máx.)" if r.kind == "slow"
         else "peticiones del atacante / admitidas", f"{r.attack_sent:,} / {r.attack_admitted:,}"),
        ("tiempo de contención (admitidas ≤ 1 %)", contained),
    ]
    for row in rows:
        summary.add_row(*row)
    out.print(summary)
    series = Table(title="Por segundo (el ataque empieza en el segundo "
                   f"{r.attack_after:.0f})")
    for name in ("s", "legítimas", "éxito", "CGNAT", "atacante", "admitidas"):
        series.add_column(name, justify="right")
    for p in r.per_second:
        series.add_row(str(p["t"]), str(p["legit"]), str(p["legit_ok"]), str(p["cgnat"]),
                       str(p["sent"]), str(p["admitted"]))
    out.print(series)


COMMANDS = {"attack": attack, "packages": packages}  # in this order in the help
