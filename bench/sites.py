"""Content for the benchmarks: the ~5 KB main.json, Irimbo-size cortes, a national-size site.

Everything is deterministic and labelled synthetic. A corte here is the whole site (path → bytes)
plus the paths that changed since the previous corte, so one series yields both full and
incremental packages cut from the same data.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from difusor.demo.election import PARTIES, ZONE, SyntheticElection
from difusor.demo.packages import archive_bytes

START = datetime(2024, 12, 8, 20, 0, tzinfo=ZONE)
CADENCE = timedelta(minutes=10)
MAIN_JSON = "json/main.json"
REALDATA = Path(os.environ.get("DIFUSOR_REALDATA", Path(__file__).resolve().parents[2] / "shared"
                                / "realdata")) / "ine2018-presidente"
PAYLOAD_BYTES = 5 * 1024
IRIMBO_FILES = 50
IRIMBO_BYTES = 2_000_000
ENTIDADES = [
    "AGUASCALIENTES", "BAJA CALIFORNIA", "BAJA CALIFORNIA SUR", "CAMPECHE", "COAHUILA", "COLIMA",
    "CHIAPAS", "CHIHUAHUA", "CIUDAD DE MÉXICO", "DURANGO", "GUANAJUATO", "GUERRERO", "HIDALGO",
    "JALISCO", "MÉXICO", "MICHOACÁN", "MORELOS", "NAYARIT", "NUEVO LEÓN", "OAXACA", "PUEBLA",
    "QUERÉTARO", "QUINTANA ROO", "SAN LUIS POTOSÍ", "SINALOA", "SONORA", "TABASCO", "TAMAULIPAS",
    "TLAXCALA", "VERACRUZ", "YUCATÁN", "ZACATECAS",
]
_COALITIONS = ["PAN-PRI", "PAN-PRD", "PRI-PRD", "PAN-PRI-PRD", "PT-PVEM", "PT-MORENA",
               "PVEM-MORENA", "PT-PVEM-MORENA", "PT-PVEM-MC", "PRD-MC", "PAN-MC", "PRI-PVEM"]
_ORIGINS = ["PREP Casilla", "CATD", "CCV"]
_REMARKS = ["Sin observaciones.", "Acta con datos ilegibles en un campo; se capturó lo legible.",
            "La suma de votos no coincide con el total asentado; se envía a verificación.",
            "Acta de escrutinio y cómputo levantada en el consejo distrital.",
            "Paquete electoral recibido con muestras de alteración; se registra la incidencia."]
_PLACES = ["Frente a la plaza principal", "A un costado del centro de salud", "Junto a la iglesia",
           "Entre la presidencia municipal y el mercado", "Esquina con la carretera federal"]


@dataclass
class Corte:
    when: datetime
    files: dict[str, bytes]
    changed: set[str]
    name: str  # package stem, e.g. 20241208_2010_PREP_IRIMBO

    def package(self, kind: str) -> bytes:
        """A zip wrapped in a ``<stem>/`` folder, as authorities send them."""
        chosen = self.files if kind == "full" else {p: self.files[p] for p in self.changed}
        return archive_bytes({f"{self.name}/{p}": b for p, b in chosen.items()}, "zip")


def _json(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False, indent=1).encode() + b"\n"


def _corte_fields(when: datetime) -> dict[str, str]:
    return {"fecha": when.strftime("%d/%m/%Y"), "hora": when.strftime("%H:%M"), "zona": "UTC-6"}


def corte_time(index: int) -> datetime:
    """The ``index``-th corte of a run: one clock for every case, so cortes always move forward."""
    return START + index * CADENCE


# -- the main.json the throughput benchmark serves ------------------------------------------------

def main_json_payload() -> tuple[bytes, str]:
    """(bytes, where they came from): a ≤ 5 KB cut of INE's real 2018 summary when present.

    The cut drops whole entries from the end of the longest list, so it stays valid JSON and keeps
    ``fechaCorte``/``horaCorte`` (the corte time difusor reads).
    """
    files = sorted(REALDATA.glob("*.json")) if REALDATA.is_dir() else []
    if not files:
        return national_main(corte_time(0), 0, 0), "synthetic national main.json"
    doc = json.loads(files[-1].read_bytes())
    longest = max((k for k, v in doc.items() if isinstance(v, list)), key=lambda k: len(doc[k]))
    data = _minified(doc)
    while len(data) > PAYLOAD_BYTES and doc[longest]:
        doc[longest].pop()
        data = _minified(doc)
    return data, f"{len(data)}-byte cut of real INE 2018 {files[-1].name}"


def _minified(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def throughput_site(payload: bytes) -> dict[str, bytes]:
    return {"index.html": b"<!doctype html><meta charset=utf-8><title>PREP</title>\n",
            MAIN_JSON: payload}


# -- Irimbo size: ~50 files, ~2 MB ------------------------------------------------------------------

def irimbo_cortes(first: int) -> Iterator[Corte]:
    """Irimbo-size cortes from the global clock index ``first`` on, every casilla counted.

    Each corte is a one-corte SyntheticElection at its own time (count=1 counts every acta), so
    every package has ~50 files; static assets (padding included) keep the same bytes throughout.
    """
    others = [p for p in next(SyntheticElection(casillas=1).cortes(1)).files
              if not p.startswith("json/casillas/")]
    casillas = IRIMBO_FILES - len(others) - 1  # the padding file is one more
    probe = next(SyntheticElection(casillas=casillas, start=corte_time(first)).cortes(1))
    padding = max(0, IRIMBO_BYTES - sum(len(b) for b in probe.files.values()))
    previous: dict[str, bytes] = {}
    index = first
    while True:
        when = corte_time(index)
        corte = next(SyntheticElection(casillas=casillas, padding=padding, start=when).cortes(1))
        changed = {p for p, b in corte.files.items() if previous.get(p) != b}
        previous = corte.files
        yield Corte(when, corte.files, changed, f"{corte.stamp}_PREP_IRIMBO")
        index += 1


# -- national size: N per-casilla JSON files of 2–5 KB ------------------------------------------------

class NationalSite:
    """A national PREP site: static assets, main.json and one JSON per casilla.

    Each new corte rewrites ``changed`` casillas (a rotating window, as actas arrive) and main.json;
    every other file keeps its exact bytes, as in a real incremental feed.
    """

    def __init__(self, casillas: int, changed: int, seed: int = 2024) -> None:
        self.count = casillas
        self.per_corte = changed
        self.seed = seed
        self.files: dict[str, bytes] = {}
        self.cursor = 0
        self.static = {p: b for p, b in next(SyntheticElection().cortes(1)).files.items()
                       if not p.startswith(("json/", "datos/"))}

    def cortes(self, first: int) -> Iterator[Corte]:
        index = first
        when = corte_time(index)
        self.files = {**self.static, **{self._path(i): self._casilla(i, when, 0) for i in
                                        range(self.count)}}
        self.files[MAIN_JSON] = national_main(when, 0, self.count)
        yield Corte(when, dict(self.files), set(self.files), f"{when:%Y%m%d_%H%M}_PREP_NACIONAL")
        while True:
            index += 1
            when = corte_time(index)
            changed = set()
            for _ in range(self.per_corte):
                i = self.cursor % self.count
                self.cursor += 1
                path = self._path(i)
                self.files[path] = self._casilla(i, when, self.cursor // self.count + 1)
                changed.add(path)
            self.files[MAIN_JSON] = national_main(when, self.cursor, self.count)
            changed.add(MAIN_JSON)
            yield Corte(when, dict(self.files), changed, f"{when:%Y%m%d_%H%M}_PREP_NACIONAL")

    @staticmethod
    def _path(i: int) -> str:
        entidad, distrito, seccion = i % 32 + 1, (i // 32) % 12 + 1, i // 384 + 1
        return f"json/casillas/{entidad:02d}/{distrito:02d}/{seccion:04d}{'BCE'[i % 3]}{i % 3 + 1}.json"

    def _casilla(self, i: int, when: datetime, revision: int) -> bytes:
        rng = random.Random(f"{self.seed}-{i}-{revision}")
        lista = rng.randint(300, 750)
        counted = revision > 0
        names = [(s, n) for s, n, _ in PARTIES] + [(c, f"Coalición {c}") for c in
                                                   rng.sample(_COALITIONS, rng.randint(0, 12))]
        votes = [rng.randint(0, lista // 4) if counted else 0 for _ in names]
        total = sum(votes)
        key = self._path(i).rsplit("/", 1)[-1][:-5]
        return _json({
            "sintetico": True,
            "clave": key,
            "entidad": {"id": i % 32 + 1, "nombre": ENTIDADES[i % 32]},
            "distritoFederal": (i // 32) % 12 + 1,
            "seccion": i // 384 + 1,
            "tipoCasilla": "BCE"[i % 3],
            "listaNominal": lista,
            "estatusActa": "CONTABILIZADA" if counted else "PENDIENTE",
            "actualizado": _corte_fields(when),
            "ubicacion": {"domicilio": f"Escuela primaria núm. {rng.randint(1, 900)}, calle "
                                       f"{rng.choice(ENTIDADES).title()} {rng.randint(1, 2000)}",
                          "referencia": rng.choice(_PLACES), "urbana": rng.random() < 0.6},
            "votos": [{"id": n + 1, "siglas": s, "nombre": name, "emblema": f"{s.lower()}.png",
                       "votos": v, "porcentaje": round(100 * v / total, 4) if total else 0}
                      for n, ((s, name), v) in enumerate(zip(names, votes, strict=True))],
            "boletas": {"sobrantes": rng.randint(0, 200) if counted else 0,
                        "personasVotaron": total, "representantes": rng.randint(0, 12),
                        "votosSacadosUrna": total},
            "candidatosNoRegistrados": rng.randint(0, 3) if counted else 0,
            "nulos": rng.randint(0, 20) if counted else 0,
            "totalVotos": total,
            "acta": {
                "origen": rng.choice(_ORIGINS),
                "imagen": f"https://prep.example.mx/actas/{i % 32 + 1:02d}/{key}.jpg",
                "sha256": hashlib.sha256(f"{key}-{revision}".encode()).hexdigest(),
                "acopio": f"{when:%d/%m/%Y %H:%M}",
                "captura": f"{when:%d/%m/%Y %H:%M}",
            },
            "observaciones": rng.choice(_REMARKS) if counted else "",
        })


def national_main(when: datetime, counted: int, expected: int) -> bytes:
    """A ~5 KB national summary with an INE 2024 ``ultimoCorte``."""
    rng = random.Random(counted)
    per_state = [{"id": n + 1, "nombre": name, "actasContabilizadas": rng.randint(0, 9000),
                  "listaNominal": rng.randint(500_000, 12_000_000),
                  "participacion": round(rng.uniform(40, 70), 4)}
                 for n, name in enumerate(ENTIDADES)]
    votes = [rng.randint(1_000_000, 9_000_000) for _ in PARTIES]
    return _minified({
        "sintetico": True,
        "eleccion": "Presidencia — SINTÉTICO",
        "ultimoCorte": _corte_fields(when),
        "actasEsperadas": expected,
        "actasContabilizadas": min(counted, expected),
        "partidos": [{"siglas": s, "nombre": n, "color": c, "votos": v}
                     for (s, n, c), v in zip(PARTIES, votes, strict=True)],
        "entidades": per_state,
    }) + b"\n"


# -- a page that links every file (added for bench/verify.py) ---------------------------------------

def listing_page(paths: list[str], title: str = "Archivos del corte (sintético)") -> bytes:
    """An HTML page with one relative link per path, so a crawler (``wget -r -l 1``) started on
    it fetches exactly those files. For synthetic bench cortes only: a real corte is the
    authority's package and nothing is ever added to it."""
    from html import escape
    from urllib.parse import quote

    links = "\n".join(f'<li><a href="{escape(quote(p))}">{escape(p)}</a></li>' for p in paths)
    return (f"<!doctype html>\n<meta charset=utf-8>\n<title>{escape(title)}</title>\n"
            f"<ul>\n{links}\n</ul>\n").encode()
