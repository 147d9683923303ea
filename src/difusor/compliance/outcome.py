"""One checked item and the whole check: ✔, ✘ or «no verificable desde aquí», with evidence."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Status = Literal["ok", "fail", "unverifiable"]
MARKS = {"ok": "✔", "fail": "✘", "unverifiable": "?"}
LABELS = {"ok": "cumple", "fail": "no cumple", "unverifiable": "no verificable desde aquí"}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Outcome:
    key: str  # stable, for scripts and tests: disk, header, https, cdn_purge, …
    clause: str  # the convocatoria's clause, e.g. «II.1.c»
    title: str
    status: Status
    evidence: str  # Spanish: what was measured, against what
    data: dict[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=now)

    @classmethod
    def ok(cls, key: str, clause: str, title: str, evidence: str, **data: Any) -> Outcome:
        return cls(key, clause, title, "ok", evidence, data)

    @classmethod
    def fail(cls, key: str, clause: str, title: str, evidence: str, **data: Any) -> Outcome:
        return cls(key, clause, title, "fail", evidence, data)

    @classmethod
    def unknown(cls, key: str, clause: str, title: str, evidence: str, **data: Any) -> Outcome:
        return cls(key, clause, title, "unverifiable", evidence, data)


@dataclass
class CheckResult:
    site: str
    started: str
    items: list[Outcome] = field(default_factory=list)
    finished: str = ""

    @property
    def passed(self) -> bool:
        """Nothing failed (what cannot be verified from here is said, not failed)."""
        return all(i.status != "fail" for i in self.items)

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for i in self.items if i.status == s) for s in MARKS}

    def as_dict(self) -> dict[str, Any]:
        return {"sitio": self.site, "inicio": self.started, "fin": self.finished,
                "cumple": self.passed, "conteo": self.counts(),
                "puntos": [asdict(i) for i in self.items]}
