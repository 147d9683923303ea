"""Carrier-grade NAT: telling an address shared by many people from one client.

An address showing ``cgnat_agents`` or more browser user agents that are human-paced (silent
seconds between bursts; a bot dealing its requests over many agents keeps each busy every
second), repeat (people, not a bot changing agent per request), are most of its agents and send
most of its browser requests is *shared*; once that stops being true it is not, at once, so
rotating agents buys a few seconds at most. A shared address's browsers may send up to
``ip_rate × cgnat_factor`` in all; what is not a browser's (scripts, tools) still gets one
address's ``ip_rate``. It is limited per address + user agent as well; network-wide limits skip it.
"""

from __future__ import annotations

from collections.abc import Callable

from difusor.config import ShieldSettings
from difusor.shield.sanctions import Action, Entry
from difusor.shield.windows import AgentWindow, Window, machine_paced

SHARED_MEMORY = 600.0  # seconds an address stays known as shared (CGNAT) after last seen so
# An agent busy in ≥ 90 % of its seconds, 4 or more, is machine-paced: a person's page load
# takes a second or two, then they read; even a few people sharing one agent leave gaps.
MACHINE_ACTIVE = 4
MACHINE_SHARE = 0.9


def ipua_key_tag(ip: str, tag: str) -> str:
    return f"{ip} ua:{tag}"


class SharedAddresses:
    """The CGNAT part of the ``Detector`` (a mixin: same state, one object, so the hot loop
    reads plain attributes). Throttles go through ``sanctions.Sanctions._respond``."""

    s: ShieldSettings
    w: int
    ip: Window
    ipua: Window
    agents: AgentWindow
    shared: dict[str, float]
    bans: dict[str, Entry]
    throttles: dict[str, Entry]
    lim_ip: float
    _n_ip: float
    _respond: Callable[..., list[Action]]  # Sanctions._respond

    def _address(self, ip: str, now: float) -> list[Action]:
        """One address over ``ip_rate``: limited, unless it is shared and its browsers explain
        the excess. Even then the total is capped, and what is not a browser's (scripts,
        tools) still gets one address's ``ip_rate``."""
        w = self.w
        n = self.ip.get(ip)
        if n <= self._n_ip:
            return []
        people = self._crowd(ip, now)
        if people is None:
            return self._respond(ip, "ip", now, self.lim_ip, {"rate": n / w, "limit": self.lim_ip},
                                 f"{n / w:.0f} pet/s en {w} s; límite {self.lim_ip:g}")
        cap = self.lim_ip * self.s.cgnat_factor
        own = n - people - self._limited_agents(ip)
        if n <= cap * w and own <= self._n_ip:
            return []
        # The throttle lets the people's pace through plus one address's worth.
        rate = min(cap, self.lim_ip + people / w)
        if n > cap * w:
            reason = f"dirección compartida (CGNAT): {n / w:.0f} pet/s en {w} s; tope {cap:g}"
        else:
            reason = (f"dirección compartida (CGNAT): {own / w:.0f} pet/s en {w} s que no son de "
                      f"navegadores; límite {self.lim_ip:g}")
        return self._respond(ip, "ip", now, rate, {"rate": n / w, "people_rate": people / w,
                                                   "limit": rate}, reason)

    def _limited_agents(self, ip: str) -> int:
        """Requests in the window of this address's agents already limited on their own."""
        prefix = ip + " ua:"
        return sum(self.ipua.get(k) for table in (self.throttles, self.bans) for k in table
                   if k.startswith(prefix))

    def _crowd(self, ip: str, now: float) -> int | None:
        """The browsers' requests in the window when ``ip`` is a shared address (CGNAT), else
        None. Shared: ``cgnat_agents`` or more human-paced browser agents that are most of its
        agents and send most of its browser requests, each agent repeating (a person fetches
        several things; a bot changing agent per request does not). Remembered for
        SHARED_MEMORY while people come and go, dropped at once when that stops being true.
        A single agent may be misjudged (a popular one shared by dozens of people is busy
        most seconds), so pace decides the whole address, never one agent's budget."""
        agents = self.agents.of(ip)
        if len(agents) >= self.s.cgnat_agents:
            counts = {t: self.ipua.get(ipua_key_tag(ip, t)) for t in agents}
            human = [t for t, pace in agents.items()
                     if not machine_paced(pace, MACHINE_ACTIVE, MACHINE_SHARE)]
            requests = sum(pace[0] for pace in agents.values())
            if len(human) >= self.s.cgnat_agents and 2 * len(human) >= len(agents) \
                    and 2 * sum(counts[t] for t in human) >= sum(counts.values()) \
                    and requests >= 1.5 * len(agents):
                self.shared[ip] = now + SHARED_MEMORY
                return sum(counts.values())
            self.shared.pop(ip, None)
            return None
        if self.shared.get(ip, 0.0) <= now:
            return None
        return sum(self.ipua.get(ipua_key_tag(ip, t)) for t in agents)
