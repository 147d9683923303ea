"""A synthetic election for Irimbo — clearly labelled SINTÉTICO everywhere it shows.

Deterministic from a seed: the same arguments always give the same cortes, byte for byte. Each
corte is the whole site (``files``) plus the paths that changed since the previous one, so a
full or an incremental package can be cut from it.
"""

from __future__ import annotations

import csv
import io
import json
import random
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from zoneinfo import ZoneInfo

ZONE = ZoneInfo("America/Mexico_City")
LABEL = "DATOS SINTÉTICOS — DEMOSTRACIÓN, NO SON RESULTADOS REALES"
PARTIES = [
    ("PAN", "Partido Acción Nacional", "0045AD"),
    ("PRI", "Partido Revolucionario Institucional", "009640"),
    ("PRD", "Partido de la Revolución Democrática", "EAC52F"),
    ("PT", "Partido del Trabajo", "D52B1E"),
    ("PVEM", "Partido Verde Ecologista de México", "50B747"),
    ("MC", "Movimiento Ciudadano", "F58025"),
    ("MORENA", "Morena", "B5261E"),
]
DATABASE = "datos/IRIMBO_AYUN_2024.zip"
_FIXED_ZIP_TIME = (2024, 12, 8, 0, 0, 0)


@dataclass
class Corte:
    number: int
    when: datetime
    files: dict[str, bytes]
    changed: set[str] = field(default_factory=set)

    @property
    def stamp(self) -> str:
        return self.when.strftime("%Y%m%d_%H%M")


class SyntheticElection:
    def __init__(
        self,
        *,
        casillas: int = 24,
        start: datetime = datetime(2024, 12, 8, 20, 0, tzinfo=ZONE),
        cadence: timedelta = timedelta(minutes=10),
        seed: int = 2024,
        padding: int = 0,
    ) -> None:
        self.casillas = casillas
        self.start = start
        self.cadence = cadence
        self.seed = seed
        self.padding = padding  # extra bytes of static assets, to size a package like a real one

    def cortes(self, count: int) -> Iterator[Corte]:
        rng = random.Random(self.seed)
        keys = [f"{1000 + i // 3:04d}{'BCE'[i % 3]}{i % 3 + 1}" for i in range(self.casillas)]
        lista = {k: rng.randint(350, 750) for k in keys}
        votes = {k: self._votes(rng, lista[k]) for k in keys}
        order = keys[:]
        rng.shuffle(order)
        static = self._static()
        previous: dict[str, bytes] = {}
        for n in range(count):
            when = self.start + n * self.cadence
            # Actas arrive over the first cortes, then the count stands still.
            counted = set(order[: round(len(order) * min(1.0, (n + 1) / max(count - 1, 1)))])
            files = dict(static)
            for k in sorted(counted):
                files[f"json/casillas/{k}.json"] = _json(
                    {"sintetico": True, "casilla": k, "listaNominal": lista[k],
                     "votos": dict(zip([p[0] for p in PARTIES] + ["NULOS"], votes[k], strict=True)),
                     "corte": _corte_fields(when)}
                )
            files["json/main.json"] = self._main(when, n, keys, counted, lista, votes)
            files[DATABASE] = self._database(when, keys, counted, lista, votes)
            changed = {p for p, b in files.items() if previous.get(p) != b}
            previous = files
            yield Corte(n + 1, when, files, changed)

    @staticmethod
    def _votes(rng: random.Random, lista: int) -> list[int]:
        turnout = int(lista * rng.uniform(0.45, 0.7))
        weights = [rng.uniform(0.2, 1.0) * w for w in (6, 9, 2, 3, 2, 4, 10)] + [0.3]
        total = sum(weights)
        return [int(turnout * w / total) for w in weights]

    def _main(self, when: datetime, n: int, keys: list[str], counted: set[str],
              lista: dict[str, int], votes: dict[str, list[int]]) -> bytes:
        totals = [sum(votes[k][i] for k in counted) for i in range(len(PARTIES) + 1)]
        emitted = sum(totals)
        ln = sum(lista[k] for k in counted)
        return _json({
            "sintetico": True,
            "aviso": LABEL,
            "eleccion": "Ayuntamiento de Irimbo, Michoacán — PELE 2024-2025",
            "ultimoCorte": _corte_fields(when),
            "numeroCorte": n + 1,
            "actasEsperadas": len(keys),
            "actasContabilizadas": len(counted),
            "porcentajeActas": round(100 * len(counted) / len(keys), 4),
            "participacion": round(100 * emitted / ln, 4) if ln else 0,
            "totalVotos": emitted,
            "partidos": [
                {"siglas": s, "nombre": name, "color": color, "votos": totals[i],
                 "porcentaje": round(100 * totals[i] / emitted, 4) if emitted else 0}
                for i, (s, name, color) in enumerate(PARTIES)
            ],
            "nulos": totals[-1],
            "casillas": sorted(counted),
        })

    def _database(self, when: datetime, keys: list[str], counted: set[str],
                  lista: dict[str, int], votes: dict[str, list[int]]) -> bytes:
        """The INE LEEME layout: ``sep=|``, title, the corte line, summary, then one row per acta."""
        out = io.StringIO()
        out.write("sep=|\r\nAYUNTAMIENTO IRIMBO (SINTÉTICO)\r\n")
        out.write(f"{when.day}/{when.month}/{when.year} {when:%H:%M} (UTC-6)\r\n")
        out.write("ACTAS_ESPERADAS|ACTAS_CONTABILIZADAS\r\n")
        out.write(f"{len(keys)}|{len(counted)}\r\n")
        writer = csv.writer(out, delimiter="|", lineterminator="\r\n")
        writer.writerow(["CLAVE_CASILLA", "LISTA_NOMINAL", *[p[0] for p in PARTIES], "NULOS",
                         "CONTABILIZADA"])
        for k in keys:
            writer.writerow([f"'{k}'", lista[k], *(votes[k] if k in counted else [""] * 8),
                             1 if k in counted else 0])
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            folder = f"{when:%Y%m%d_%H%M}_PREP_AYUN_IRIMBO"
            for name, text in ((f"{folder}/IRIMBO_AYUN_2024.csv", out.getvalue()),
                               (f"{folder}/LEEME.txt", _LEEME)):
                info = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, text.encode("latin-1", "replace"))
        return buf.getvalue()

    def _static(self) -> dict[str, bytes]:
        site = resources.files("difusor.demo") / "site"
        files = {
            "index.html": (site / "index.html").read_bytes(),
            "assets/app.js": (site / "app.js").read_bytes(),
            "assets/estilo.css": (site / "estilo.css").read_bytes(),
        }
        for siglas, _, color in PARTIES:
            files[f"img/{siglas.lower()}.svg"] = (
                '<svg xmlns="http://www.w3.org/2000/svg" width="48" height="48">'
                f'<rect width="48" height="48" rx="8" fill="#{color}"/>'
                f'<text x="24" y="29" font-size="11" text-anchor="middle" fill="#fff" '
                f'font-family="sans-serif">{siglas}</text></svg>\n'
            ).encode()
        if self.padding:
            rng = random.Random(self.seed + 1)
            files["assets/recursos.bin"] = rng.randbytes(self.padding)
        return files


def _corte_fields(when: datetime) -> dict[str, str]:
    return {"fecha": when.strftime("%d/%m/%Y"), "hora": when.strftime("%H:%M"),
            "zona": "UTC-6"}


def _json(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False, indent=1).encode() + b"\n"


_LEEME = """LEEME — base de datos SINTÉTICA del PREP de demostración de Irimbo.
No son resultados reales. Estructura como la de los PREP del INE: separador «|»,
línea 3 con la fecha y hora del corte, y una fila por acta.
"""
