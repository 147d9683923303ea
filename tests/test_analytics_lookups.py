"""The ingest's lookups: agents classified once each (in this process), the mmdb's ranges."""

from __future__ import annotations

from difusor.analytics import agents
from difusor.analytics.geo import default_db
from difusor.analytics.geocache import cache_name
from difusor.analytics.lookups import WARM_BYTES, Lookups

AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "", "curl/8.5.0", "agente\traro\ncon saltos",
]


def test_agents_are_answered_as_tsv_rows_keyed_by_their_hash() -> None:
    lookups = Lookups(default_db())
    try:
        text = lookups.ask([(ua, 1000 + i) for i, ua in enumerate(AGENTS)])
    finally:
        lookups.close()
    rows = [line.split("\t") for line in text.splitlines()]
    assert len(rows) == len(AGENTS) and all(len(r) == 5 for r in rows)
    for (h, browser, os_family, device, bot), (i, ua) in zip(rows, enumerate(AGENTS),
                                                             strict=True):
        expected = agents.classify(ua)
        assert int(h) == 1000 + i
        assert (browser, os_family, device) == tuple(
            v.replace("\t", " ").replace("\n", " ") for v in expected[:3])
        assert bot == ("true" if expected.bot else "false")
    assert rows[0][1:4] == ["Chrome", "Windows", "escritorio"]
    assert rows[3][3:] == ["bot", "true"]  # no agent: a robot


def test_a_large_read_warms_the_classifier_up_in_a_thread() -> None:
    lookups = Lookups(default_db())
    lookups.warm_for(WARM_BYTES - 1)
    assert lookups._warm is None  # too little to be worth a thread
    lookups.warm_for(WARM_BYTES)
    warm = lookups._warm
    assert warm is not None
    lookups.start()  # (once)
    assert lookups._warm is warm
    lookups.close()
    assert not warm.is_alive()


def test_the_ranges_are_named_by_the_mmdb() -> None:
    assert Lookups(default_db()).geo_key() == cache_name(default_db())
