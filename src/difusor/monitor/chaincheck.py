"""The public chain checked from every vantage point, each round: ``difusor verify``'s own check
(chain, live corte, manifest root, a sample of files as a visitor gets them) on top of a probe
that found the site up. A mismatch makes the round an ``integrity`` failure, which opens an
integrity incident like any other; the result goes in the probe's detail either way, so the
memoria counts the verifications made."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import httpx

from difusor.integrity.verify import verify_site
from difusor.monitor.probe import DOWN, ProbeResult


class ChainCheck:
    def __init__(self, sample: int) -> None:
        self.sample = max(1, sample)
        self._manifests: dict[str, dict[str, Any]] = {}

    def apply(self, result: ProbeResult, url: str, client: httpx.Client, *,
              required: bool = False) -> ProbeResult:
        """``required``: the chain must be readable (the local monitor, whose ledger holds
        one); otherwise (a remote agent, or no activation since the upgrade) an unreadable
        chain is noted, not failed."""
        if not result.ok or result.failure in DOWN or result.status != 200:
            return result  # already down, or nothing served yet: nothing to add
        report = verify_site(url, sample=self.sample, http=client, manifests=self._manifests)
        chain: dict[str, Any] = {"ok": report.ok, "entries": report.entries,
                                 "head": report.head, "corte": report.corte,
                                 "checked": report.checked}
        if report.ok or (report.unreachable and not required):
            if not report.ok:
                chain["note"] = report.problems[0]
            return replace(result, detail={**result.detail, "chain": chain})
        chain["problems"] = report.problems[:5]
        chain["mismatches"] = [asdict(m) for m in report.mismatches[:20]]
        if report.problems:
            what = report.problems[0]
        else:
            m = report.mismatches[0]
            what = (f"/{m.path} no es lo publicado (manifiesto {m.expected[:12]}…, servido "
                    f"{m.served[:12]}…)" + (f" y {len(report.mismatches) - 1} más"
                                          if len(report.mismatches) > 1 else ""))
        return ProbeResult(result.target, False, "integrity", result.status, result.latency_ms,
                           result.corte, f"verificación pública: {what}",
                           {**result.detail, "chain": chain})
