"""Unique visitors per day agree with GoAccess's on the same combined log (within 0.5 %).

GoAccess keys a visitor by IP + date + user agent and dates each line by its own offset; the
generated log is in -0600, so its days are the site's local days. Crawlers are included on both
sides (GoAccess counts them unless told not to; difusor with ``--include-bots``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import visitlog
from conftest import make_site

from difusor.analytics import ingest  # a broken import must fail, not skip
from difusor.analytics.metrics import summary

GOACCESS = shutil.which("goaccess") or "/usr/bin/goaccess"


def goaccess_visitors(log: Path, report: Path) -> dict[str, int]:
    done = subprocess.run([GOACCESS, str(log), "--log-format=COMBINED", "--date-spec=date",
                           "-o", str(report)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(report.read_text())["visitors"]["data"]
    return {f"{r['data'][:4]}-{r['data'][4:6]}-{r['data'][6:]}": r["visitors"]["count"]
            for r in rows}


@pytest.mark.slow
def test_unique_visitors_per_day_match_goaccess(tmp_path: Path) -> None:
    if not Path(GOACCESS).exists():
        pytest.skip("falta goaccess (make deps instala «goaccess»)")
    traffic = visitlog.generate(seed=11, people=900)
    log = traffic.write_combined(tmp_path / "access.log")
    theirs = goaccess_visitors(log, tmp_path / "report.json")
    truth = traffic.truth(include_bots=True).days_all
    assert theirs == truth  # GoAccess itself counts what the generator made

    site = make_site(tmp_path / "d")
    try:
        ingest.ingest_files(site.cfg, [log], fmt="combined")
        data = summary(site.cfg, None, None, include_bots=True)
    finally:
        site.ledger.close()
    ours = {d["day"]: d["visitors"] for d in data["days"]}
    assert set(ours) == set(theirs) and len(theirs) == 2
    for day, n in theirs.items():
        assert abs(ours[day] - n) <= 0.005 * n, (day, ours[day], n)
