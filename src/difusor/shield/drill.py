"""An attack drill on loopback: simulated visitors and one kind of attacker, counted per second.

Everyone is a raw HTTP/1.1 client on asyncio (a flood needs more requests per second than httpx
gives), bound to its own 127.x source address so a server sees distinct clients:

* visitors (``127.10.x.y``, one address each): load the page (``/``, its assets, ``main.json``),
  poll ``json/main.json`` every few seconds, open a view now and then;
* a CGNAT pool (all on ``127.20.0.1``, each user with its own browser user agent): users poll
  ``main.json`` every 60 s from a random offset, some arrive and load the page, some browse;
* attackers (``127.30.x.y``), by kind: ``ip`` one address at full speed over keep-alive
  connections; ``distributed`` 200 addresses; ``cachebust`` random query strings on
  ``main.json``; ``scan`` random missing paths; ``slow`` slowloris (connections trickling
  headers, reopened when the server drops them); ``uarotate`` one address posing as a CGNAT:
  40 connections, each with its own plausible browser user agent, fetching the page's files at
  150 requests/s in all (``rate``).

The attack starts ``attack_after`` seconds in, so the series shows the calm before it. An attacker
request is *admitted* when the server answered it with anything but a refusal (403, 429, 503):
it reached the file lookup. For ``slow``, each second counts the connections the attacker wants
open (sent) against those the server still holds (admitted). *Containment* is the first second
after the attack started from which the admitted share stays ≤ 1 % to the end.
"""

from __future__ import annotations

import asyncio
import gzip
import math
import random
import re
import resource
import time
from collections import Counter
from typing import Any

from difusor.errors import DifusorError
from difusor.shield.drill_plan import (
    DEFAULT_ATTACKERS,
    DEFAULT_CONNECTIONS,
    DEFAULT_RATE,
    KINDS,
    DrillPlan,
    DrillReport,
    browser_agents,
    check_target,
    source,
    tally,
)
from difusor.shield.rawhttp import FAILED, TIMEOUT, Link

ATTACKER_AGENT = "Mozilla/5.0 (compatible; inundador)"
REFUSED = frozenset({403, 429, 503})
CGNAT_ADDRESS = "127.20.0.1"
MAIN = "/json/main.json"
_ASSET = re.compile(rb"""(?:src|href)=["']?([^"' >]+\.(?:css|js))""", re.I)


# -- the drill -------------------------------------------------------------------------------------

class Drill:
    def __init__(self, plan: DrillPlan) -> None:
        if plan.kind not in KINDS:
            raise DifusorError(f"--kind debe ser uno de: {', '.join(KINDS)}")
        if not 1 <= plan.duration <= 3600:
            raise DifusorError("--duration va de 1 a 3600 segundos")
        self.plan = plan
        self.host, self.port, self.v6 = check_target(plan.target)
        self.rng = random.Random(plan.seed)
        self.attackers = plan.attackers or DEFAULT_ATTACKERS[plan.kind]
        self.connections = plan.connections or DEFAULT_CONNECTIONS[plan.kind]
        self.rate = plan.rate or DEFAULT_RATE.get(plan.kind)
        # uarotate: one browser agent per connection, none of them the visitors' own.
        self.rotation = (browser_agents(self.connections, random.Random(plan.seed + 1))
                         if plan.kind == "uarotate" else [])
        # One slot per second the drill lasts; a request that checked ``live`` just before the
        # end and counts just after it belongs to the last one (the report's totals and its
        # per-second series must add up).
        seconds = math.ceil(plan.duration)
        self.series = {k: [0] * seconds for k in ("legit", "legit_ok", "cgnat", "cgnat_ok",
                                                 "sent", "admitted", "held")}
        self.legit_status: Counter[str] = Counter()
        self.attack_status: Counter[str] = Counter()
        self.refused_visitors: set[int] = set()
        self.refused_users: set[int] = set()
        self.active_users: set[int] = set()
        self.page = ["/", MAIN]
        self.views: list[str] = []
        self.slow_open = 0

    def src(self, block: int, n: int) -> str | None:
        return None if self.v6 else source(block, n)

    def second(self) -> int:
        return min(int(time.monotonic() - self.t0), len(self.series["sent"]) - 1)

    def live(self) -> bool:
        return time.monotonic() < self.end

    async def nap(self, seconds: float) -> None:
        """Sleep, but never past the end of the drill (so it stops on time)."""
        await asyncio.sleep(max(0.0, min(seconds, self.end - time.monotonic())))

    async def run(self) -> DrillReport:
        _raise_file_limit()
        await self.discover()
        self.t0 = time.monotonic()
        self.end = self.t0 + self.plan.duration
        agents = browser_agents(self.plan.cgnat_users + self.plan.visitors, self.rng)
        tasks = [self.visitor(n, agents[n]) for n in range(self.plan.visitors)]
        tasks += [self.cgnat_user(n, agents[self.plan.visitors + n])
                  for n in range(self.plan.cgnat_users)]
        for a in range(self.attackers):
            for c in range(self.connections):
                tasks.append(self.slowloris(a) if self.plan.kind == "slow" else self.attacker(a, c))
        if self.plan.kind == "slow":
            tasks.append(self.sample_held())
        running = [asyncio.ensure_future(t) for t in tasks]
        try:
            await asyncio.wait(running, timeout=self.plan.duration + TIMEOUT + 2)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        return self.report()

    async def discover(self) -> None:
        """The page's assets and the views, read from the target itself (before the clock)."""
        link = Link(self.host, self.port, self.src(10, 0), "difusor-simulacro")
        try:
            status, body = await link.get("/", close=True)
            if status == 200:
                found = [m.decode() for m in _ASSET.findall(_plain(body))]
                self.page[1:1] = ["/" + p.lstrip("./") for p in found
                                  if "://" not in p and not p.startswith("//")][:8]
            status, body = await Link(self.host, self.port, self.src(10, 0),
                                      "difusor-simulacro").get(MAIN, close=True)
            if status == 200:
                doc = _json(body)
                keys = doc.get("casillas") if isinstance(doc, dict) else None
                if isinstance(keys, list):
                    self.views = [f"/json/casillas/{k}.json" for k in keys[:50]]
        except FAILED as exc:
            raise DifusorError(f"el objetivo {self.plan.target} no responde: {exc}") from None
        finally:
            link.close()

    # -- people ---------------------------------------------------------------------------

    async def burst(self, link: Link, paths: list[str], cgnat: int | None, visitor: int | None
                    ) -> None:
        """Requests one after another on a fresh keep-alive connection, then closed."""
        role = "cgnat" if cgnat is not None else "legit"
        try:
            for path in paths:
                if not self.live():
                    return
                at = self.second()
                self.series[role][at] += 1
                try:
                    status, _ = await link.get(path)
                    tag = str(status)
                except FAILED as e:
                    status, tag = 0, type(e).__name__
                self.legit_status[tag] += 1
                if 200 <= status < 400:
                    self.series[role + "_ok"][at] += 1
                    continue
                if cgnat is not None:
                    self.refused_users.add(cgnat)
                elif visitor is not None:
                    self.refused_visitors.add(visitor)
        finally:
            link.close()

    async def visitor(self, n: int, agent: str) -> None:
        rng = random.Random(self.plan.seed * 7919 + n)
        await self.nap(rng.uniform(0, min(self.plan.poll, self.plan.duration / 3)))
        make = lambda: Link(self.host, self.port, self.src(10, n), agent)  # noqa: E731
        await self.burst(make(), self.page, None, n)
        while self.live():
            await self.nap(self.plan.poll * rng.uniform(0.9, 1.1))
            paths = [MAIN] + ([rng.choice(self.views)] if self.views and rng.random() < 0.2 else [])
            await self.burst(make(), paths, None, n)

    async def cgnat_user(self, n: int, agent: str) -> None:
        rng = random.Random(self.plan.seed * 104729 + n)
        await self.nap(rng.uniform(0, min(self.plan.cgnat_poll, self.plan.duration)))
        if not self.live():
            return
        self.active_users.add(n)
        src = None if self.v6 else CGNAT_ADDRESS
        make = lambda: Link(self.host, self.port, src, agent)  # noqa: E731
        await self.burst(make(), self.page if rng.random() < 0.5 else [MAIN], n, None)
        while self.live():
            await self.nap(self.plan.cgnat_poll * rng.uniform(0.95, 1.05))
            paths = [MAIN] + ([rng.choice(self.views)] if self.views and rng.random() < 0.3 else [])
            await self.burst(make(), paths, n, None)

    # -- attackers ------------------------------------------------------------------------

    def attack_path(self, rng: random.Random) -> str:
        kind = self.plan.kind
        if kind == "cachebust":
            return f"{MAIN}?_={rng.getrandbits(48):x}"
        if kind == "scan":
            return rng.choice(("/wp-admin/", "/.env", "/admin/", "/api/v1/", "/backup/", "/x/")) \
                + f"{rng.getrandbits(40):x}.php"
        if kind == "distributed":
            return rng.choice(("/", MAIN, MAIN))
        if kind == "uarotate":
            return rng.choice(self.page)  # what a browser fetches, from every agent in turn
        return MAIN

    async def attacker(self, a: int, c: int = 0) -> None:
        rng = random.Random(self.rng.random())
        await self.nap(self.plan.attack_after)
        agent = self.rotation[c] if self.rotation else ATTACKER_AGENT
        link = Link(self.host, self.port, self.src(30, a), agent)
        # Paced (rate): each connection keeps its own slot, staggered, never catching up in bursts.
        period = self.attackers * self.connections / self.rate if self.rate else 0.0
        due = time.monotonic() + period * c / self.connections
        while self.live():
            if period:
                await self.nap(due - time.monotonic())
                due = max(due + period, time.monotonic())
                if not self.live():
                    break
            at = self.second()
            self.series["sent"][at] += 1
            try:
                status, _ = await link.get(self.attack_path(rng), 2.0)
                tag = str(status)
            except FAILED as e:
                status, tag = 0, type(e).__name__
                await asyncio.sleep(0.05)  # a refused connection: retry soon, not in a spin
            self.attack_status[tag] += 1
            if status and status not in REFUSED:
                self.series["admitted"][at] += 1
        link.close()

    async def slowloris(self, a: int) -> None:
        """Open a connection and trickle header lines so the request never ends."""
        rng = random.Random(self.rng.random())
        await self.nap(self.plan.attack_after + rng.uniform(0, 1))
        while self.live():
            link = Link(self.host, self.port, self.src(30, a), "Mozilla/5.0 (lento)")
            try:
                await link.open(2.0)
                assert link.writer is not None and link.reader is not None
                self.slow_open += 1
                self.attack_status["abierta"] += 1
                link.writer.write(f"GET / HTTP/1.1\r\nHost: {self.host}\r\n".encode())
                while self.live():
                    try:
                        data = await asyncio.wait_for(link.reader.read(1024), 2.0)
                    except TimeoutError:
                        link.writer.write(f"X-{rng.getrandbits(16):x}: {rng.getrandbits(16)}\r\n"
                                          .encode())
                        continue
                    if not data:  # the server let it go (or answered 408 and closed)
                        self.attack_status["cerrada"] += 1
                        break
            except OSError as e:  # TimeoutError included
                self.attack_status[type(e).__name__] += 1
            finally:
                if link.writer is not None:
                    self.slow_open -= 1
                link.close()
            await self.nap(1.0)

    async def sample_held(self) -> None:
        await self.nap(self.plan.attack_after)
        wanted = self.attackers * self.connections
        while self.live():
            at = self.second()
            self.series["sent"][at] = wanted
            self.series["held"][at] = max(self.series["held"][at], self.slow_open)
            self.series["admitted"][at] = self.series["held"][at]
            await asyncio.sleep(0.25)

    # -- the numbers ----------------------------------------------------------------------

    def report(self) -> DrillReport:
        return tally(self.plan, self.attackers, self.series, self.legit_status,
                     self.attack_status, visitors_refused=len(self.refused_visitors),
                     cgnat_users_active=len(self.active_users),
                     cgnat_users_refused=len(self.refused_users))


def run_drill(plan: DrillPlan) -> DrillReport:
    """Run one drill to its end (bounded by ``plan.duration`` plus a few seconds)."""
    return asyncio.run(Drill(plan).run())


def _plain(body: bytes) -> bytes:
    """The body as sent before compression (visitors ask for gzip, as browsers do)."""
    return gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body


def _json(body: bytes) -> Any:
    import orjson

    try:
        return orjson.loads(_plain(body))
    except orjson.JSONDecodeError:
        return None


def _raise_file_limit() -> None:
    """Hundreds of sockets at once: lift the soft limit of open files to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
