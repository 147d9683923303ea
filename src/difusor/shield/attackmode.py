"""Attack mode: the whole site under a flood, and every limit tightened while it lasts.

It starts when the total rate is ``attack_factor`` times what the baseline expects now (never
below ``attack_rate``) *and* most of it comes from sources above the tight per-address limit;
limits become ``× attack_limit_factor``; it ends after ``attack_quiet`` calm seconds. An operator
may switch it either way; one who switches it off is not overruled for ``attack_quiet`` seconds.
"""

from __future__ import annotations

from collections.abc import Callable

from difusor.config import ShieldSettings
from difusor.shield.baseline import Baseline
from difusor.shield.sanctions import Action, Entry
from difusor.shield.windows import Window


class AttackMode:
    """The attack-mode part of the ``Detector`` (a mixin: same state, one object, so the hot
    loop reads plain attributes)."""

    s: ShieldSettings
    w: int
    ip: Window
    baseline: Baseline
    shared: dict[str, float]
    bans: dict[str, Entry]
    throttles: dict[str, Entry]
    attack: bool
    attack_by: str | None
    attack_since: float | None
    peak: int
    refused: int
    _calm_since: float | None
    _hold_until: float
    total_rate: Callable[[], float]  # Detector.total_rate

    def _limits(self) -> None:
        f = self.s.attack_limit_factor if self.attack else 1.0
        w = self.w
        self.lim_ip = self.s.ip_rate * f
        self.lim_ipua = self.s.ipua_rate * f
        self.lim_net = self.s.net_rate * f
        self.lim_asn = self.s.asn_rate * f
        self.tight = self.s.ip_rate * self.s.attack_limit_factor
        self._n_ip, self._n_ipua = self.lim_ip * w, self.lim_ipua * w
        self._n_net, self._n_asn = self.lim_net * w, self.lim_asn * w

    def _attack_mode(self, now: float) -> list[Action]:
        total = self.total_rate()
        expected = self.baseline.expected(now)
        threshold = max(self.s.attack_rate, self.s.attack_factor * expected)
        rates = {"total": round(total, 1), "expected": round(expected, 1),
                 "threshold": round(threshold, 1), "surge": self.baseline.surging(now)}
        if not self.attack:
            if total <= threshold or now < self._hold_until:
                return []
            share = self._suspicious_share()
            if share < 0.5:
                return []
            rates["suspicious_share"] = round(share, 3)
            self.set_attack(True, "auto", now)
            return [Action("attack_mode_on", "*", "ip", f"{total:.0f} pet/s, {threshold:.0f} "
                           f"esperadas como máximo; {share:.0%} de fuentes sospechosas",
                           rates, self.w)]
        if self.attack_by != "auto" or total > threshold:
            self._calm_since = None
            return []
        self._calm_since = self._calm_since or now
        if now - self._calm_since < self.s.attack_quiet:
            return []
        self.set_attack(False, "auto", now)
        return [Action("attack_mode_off", "*", "ip", f"{self.s.attack_quiet:.0f} s de calma "
                       f"({total:.0f} pet/s)", rates, self.w)]

    def _suspicious_share(self) -> float:
        tight = self.tight * self.w
        bad = total = 0
        for ip, n in self.ip.totals.items():
            total += n
            if ip in self.bans or ip in self.throttles or (n > tight and ip not in self.shared):
                bad += n
        return bad / total if total else 0.0

    def set_attack(self, on: bool, by: str, now: float) -> None:
        if on and not self.attack:
            self.attack_since, self.peak, self.refused = now, 0, 0
        if not on and self.attack and by == "operator":
            self._hold_until = now + self.s.attack_quiet  # the operator said no: respect it
        self.attack, self.attack_by = on, (by if on else None)
        self._calm_since = None
        self._limits()
