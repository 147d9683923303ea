"""What an ingest counted (``IngestResult``): files, lines, rows stored, lines not understood,
our own monitor's requests, files already in, and the one Spanish line that says it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class IngestResult:
    files: int = 0
    lines: int = 0
    rows: int = 0
    bad: int = 0
    own: int = 0
    already: int = 0
    bytes: int = 0
    seconds: float = 0.0
    formats: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def add(self, other: IngestResult) -> None:
        for name in ("files", "lines", "rows", "bad", "own", "already", "bytes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.formats.update(other.formats)
        self.warnings += other.warnings

    def describe(self) -> str:
        """One Spanish line: files, lines, rows stored, lines not understood, files already in."""
        text = (f"{_n(self.files, 'archivo', 'archivos')}: {_n(self.lines, 'línea', 'líneas')}, "
                f"{_n(self.rows, 'fila guardada', 'filas guardadas')}, "
                f"{_n(self.bad, 'línea no entendida', 'líneas no entendidas')}")
        if self.own:
            text += f", {_n(self.own, 'petición propia', 'peticiones propias')} (monitor) sin contar"
        if self.already:
            text += (f"; {_n(self.already, 'archivo ya ingerido', 'archivos ya ingeridos')} "
                     "sin líneas nuevas")
        if self.seconds > 0.05 and self.lines:
            text += f"; {self.seconds:.1f} s ({self.lines / self.seconds:,.0f} líneas/s)"
        if self.warnings:
            text += f"; aviso: {self.warnings[0]}"
        return text


def _n(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"
