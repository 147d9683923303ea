"""Where a package states its corte, gathered during the streaming pass, and which one wins.

In order: configured JSON pointers; for a database package, its CSV line; the known JSON
conventions (main.json's first, dates before names); the package's name; any database CSV
(or one inside a zip the package carries, INE's LEEME layout). A source that states a corte
that cannot be used is returned as such, never skipped for a weaker one: that would be a guess.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Protocol

from difusor.config import CorteSettings, PackageSettings
from difusor.errors import PackageRefused
from difusor.package import corte
from difusor.package.decoding import parse_json

CSV_HEAD = 4096  # the corte line is among a database CSV's first lines

Found = corte.CorteTime | PackageRefused  # a corte, or one stated but unusable


class Readback(Protocol):
    """The store's staging area, where a nested zip's bytes are read back from."""

    def read(self, sha256: str) -> bytes: ...


def found(when: datetime | PackageRefused, source: str) -> Found:
    if isinstance(when, PackageRefused):
        return PackageRefused(when.code, f"{source}: {when.message}")
    return corte.CorteTime(when, source)


class CorteClues:
    """What the files said about the corte, noted as they stream past."""

    def __init__(self, settings: PackageSettings, corte_settings: CorteSettings, zone: tzinfo,
                 sink: Readback) -> None:
        self.s = settings
        self.cs = corte_settings
        self.zone = zone
        self.sink = sink
        self.conventions: list[tuple[str, int, int, Found]] = []  # path, rank, order, time
        self.csv_times: list[Found] = []
        self.nested_zips: list[tuple[str, str]] = []

    # -- during the pass -----------------------------------------------------------------

    def json(self, path: str, data: bytes) -> None:
        for rank, when, which in corte.from_json_conventions(data, self.zone, self.cs.date_order):
            self.conventions.append((path, rank, len(self.conventions),
                                     found(when, f"{path}: {which}")))

    def csv_head(self, path: str, head: bytes) -> None:
        source = f"{path}: línea de corte del CSV"
        try:
            when = corte.from_csv_head(head, self.cs.date_order)
        except PackageRefused as exc:
            self.csv_times.append(found(exc, source))
            return
        if when:
            self.csv_times.append(found(when, source))

    def nested_zip(self, path: str, sha: str) -> None:
        self.nested_zips.append((path, sha))

    # -- after the pass ------------------------------------------------------------------

    def pick(self, name: str, kept: dict[str, bytes], final: Callable[[str], str]
             ) -> corte.CorteTime:
        """The package's corte (``kept``: whole files by final path; ``final``: archive path →
        final path); PackageRefused when none is stated or the one stated cannot be used."""
        result = self._find(name, kept, final)
        if isinstance(result, PackageRefused):
            raise result
        corte.check_calendar(result.when, self.zone, result.source)
        return result

    def _find(self, name: str, kept: dict[str, bytes], final: Callable[[str], str]) -> Found:
        """The strongest source that states a corte; a source that states one that cannot be
        used is returned as such (never skipped for a weaker one: that would be a guess)."""
        order = self.cs.date_order
        for spec in self.cs.json_pointers:
            file, pointer = spec.split("#", 1)
            file = file.lstrip("/")
            if file not in kept:
                continue
            try:
                value = corte.resolve_pointer(parse_json(file, kept[file]), pointer)
            except (KeyError, IndexError, ValueError, TypeError):
                continue
            source = f"{file}#{pointer}"
            try:
                when = corte.from_value(value, self.zone, order)
            except PackageRefused as exc:
                return found(exc, source)
            if when:
                return corte.CorteTime(when, source)
        if self.s.kind == "database":  # the database states its corte in its CSV line
            from_csv = self._csv_corte(final)
            if from_csv:
                return from_csv
        main = self.s.main_json
        ranked = sorted(
            ((0 if final(path) == main else 1, rank, n, hit)
             for path, rank, n, hit in self.conventions),
            key=lambda r: r[:3],
        )
        best = [r for r in ranked if r[1] < 2]  # dates before names
        if best:
            return best[0][3]
        if ranked:
            return ranked[0][3]
        when = corte.from_stamp(name, self.zone)
        if when:
            return corte.CorteTime(when, f"nombre del paquete «{name}»")
        from_csv = self._csv_corte(final)
        if from_csv:
            return from_csv
        raise PackageRefused(
            "no_corte",
            "no encontré la fecha y hora del corte (ni en los JSON, ni en el nombre del "
            "paquete, ni en la base de datos CSV); configura corte.json_pointers si el "
            "formato es otro",
        )

    def _csv_corte(self, final: Callable[[str], str]) -> Found | None:
        """The corte line of a CSV in the package, or of one inside a zip it carries."""
        if self.csv_times:
            return self.csv_times[0]
        for path, sha in self.nested_zips:
            nested = nested_csv_time(final(path), self.sink.read(sha), self.cs.date_order)
            if nested:
                return nested
        return None


def nested_csv_time(path: str, data: bytes, order: str) -> Found | None:
    """The corte line of a database zip carried inside the package (INE LEEME layout)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            csvs = [i for i in zf.infolist() if i.filename.lower().endswith(".csv")][:20]
            for info in csvs:
                with zf.open(info) as f:
                    head = f.read(CSV_HEAD)
                source = f"{path}/{info.filename}: línea de corte del CSV"
                try:
                    when = corte.from_csv_head(head, order)
                except PackageRefused as exc:
                    return found(exc, source)
                if when:
                    return corte.CorteTime(when, source)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, RuntimeError):
        return None
    return None
