"""The benchmark scripts keep working (their --quick mode); the numbers themselves live in bench/."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("nginx", "wrk", "rsync", "unzip")


def run_quick(script: str, tmp_path: Path, *extra: str, result: str = "") -> dict:
    missing = [b for b in NEEDED if not shutil.which(b) and not Path("/usr/sbin", b).exists()]
    if missing:
        pytest.skip(f"faltan {', '.join(missing)} (make test los instala como root)")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick", *extra], capture_output=True,
        text=True,
        timeout=240, cwd=ROOT, env={"DIFUSOR_BENCH_OUT": str(out), "PATH": "/usr/sbin:/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads((out / (result or script.replace(".py", ".json"))).read_text())


@pytest.mark.slow
def test_serve_throughput_quick(tmp_path: Path) -> None:
    result = run_quick("serve_throughput.py", tmp_path)
    for name in ("difusor", "nginx"):
        check = result["checks"][name]
        assert check["status"] == 200 and check["bytes_match"]
        assert check["cache_control"] == ["no-cache, no-store, must-revalidate"]
    assert result["summary"]["difusor"]["median_rps"] > 0 and result["ratio"] > 0


@pytest.mark.slow
def test_publish_latency_quick(tmp_path: Path) -> None:
    result = run_quick("publish_latency.py", tmp_path)
    cases = {c["case"] for c in result["summary"]}
    assert cases == {"irimbo-full", "irimbo-incremental", "national-full", "national-incremental"}
    for case in result["summary"]:
        assert case["difusor"]["p50_ms"] > 0 and case["anchor"]["p50_ms"] > 0


@pytest.mark.slow
def test_sftp_throughput_quick(tmp_path: Path) -> None:
    result = run_quick("sftp_throughput.py", tmp_path)
    assert result["summary"]["embedded"]["median_mbps"] > 0


@pytest.mark.slow
def test_receive_latency_quick(tmp_path: Path) -> None:
    result = run_quick("receive_latency.py", tmp_path)
    assert result["summary"]["embedded"]["n"] == 4
    assert result["summary"]["embedded"]["p50_ms"] > 0


@pytest.mark.slow
def test_edge_polling_quick(tmp_path: Path) -> None:
    if not shutil.which("varnishd") and not Path("/usr/sbin/varnishd").exists():
        pytest.skip("falta varnishd (make deps instala «varnish»)")
    result = run_quick("edge_polling.py", tmp_path)
    without, with_targeted = result["configs"]
    assert (without["config"], with_targeted["config"]) == ("no-targeted", "targeted")
    assert (without["targeted_seconds"], with_targeted["targeted_seconds"]) == (0, 5)
    for config in (without, with_targeted):
        assert config["tabs"] == 200 and config["edge_rps"] > 0 and config["errors"] == 0
        assert config["edge_check"]["cache_control"] == ["no-cache, no-store, must-revalidate"]
        assert config["publish"]["n"] == 2 and config["publish"]["edge_p50_ms"] > 0
    assert without["origin_share"] > 0.9 > with_targeted["origin_share"]
    assert with_targeted["origin_rps"] < without["origin_rps"]
    assert result["reduction"]["factor"] > 1
    assert len(result["samples"]) == 4


@pytest.mark.slow
def test_shield_drill_quick(tmp_path: Path) -> None:
    result = run_quick("shield_drill.py", tmp_path)
    assert result["kinds"] == ["ip"]
    by_server = {o["server"]: o for o in result["outcomes"]}
    assert set(by_server) == {"difusor", "nginx"}
    for outcome in by_server.values():
        assert outcome["attack_sent"] > 0 and outcome["legit_requests"] > 0
        assert outcome["cgnat_users_active"] > 0
    assert set(result["per_second"]) == {"ip/difusor", "ip/nginx"}


@pytest.mark.slow
def test_analytics_ingest_quick(tmp_path: Path) -> None:
    if not shutil.which("goaccess") and not Path("/usr/bin/goaccess").exists():
        pytest.skip("falta goaccess (make deps instala «goaccess»)")
    result = run_quick("analytics_ingest.py", tmp_path)
    compare = result["compare"]
    assert compare["log"]["lines"] == 5_000
    for side in ("goaccess", "difusor"):
        assert compare[side]["lines_per_s"] > 0 and compare[side]["peak_rss_mb"] > 0
    assert result["ratio"] > 0
    assert compare["visitors_per_day"]["max_relative_difference"] <= 0.005
    for c in result["shapes"].values():  # DuckDB alone, parsing the same log: the floor
        assert c["duckdb_floor"]["seconds"] > 0 and c["ceiling_ratio"] > 0
    big = result["big"]
    assert big["lines"] == 20_000 and big["result"]["hits"] > 0
    assert big["summary"]["seconds"] > 0 and big["ingest"]["peak_rss_mb"] > 0


@pytest.mark.slow
def test_memoria_quick(tmp_path: Path) -> None:
    result = run_quick("report.py", tmp_path)
    for part in ("month", "night"):
        data = result[part]
        assert data["data"]["lines"] >= 10_000 and data["data"]["probes"] > 0
        assert data["report"]["seconds"] > 0 and data["report"]["peak_rss_mb"] > 0
        assert data["summary"]["seconds"] > 0 and data["ratio"] > 0
        assert data["pdf_bytes"] > 0 and data["html_bytes"] > 0
    assert result["month"]["data"]["probes"] == 2 * 8640  # a day of two targets every 10 s


@pytest.mark.slow
def test_verify_quick(tmp_path: Path) -> None:
    if not shutil.which("wget") and not Path("/usr/bin/wget").exists():
        pytest.skip("falta wget (apt-get install wget)")
    result = run_quick("verify.py", tmp_path)
    files = result["settings"]["files"]
    assert files > 500 and result["settings"]["casillas"] == 500
    assert set(result["summary"]) == {"difusor", "nginx"}
    for row in result["summary"].values():
        # Both sides fetched the whole corte: wget counted on disk, verify checked == files.
        assert row["wget"]["files"] == row["verify"]["files"] == files
        assert row["wget"]["median_s"] > 0 and row["verify"]["median_s"] > 0
        assert len(row["pair_ratios"]) == 1
    assert len(result["runs"]) == 2 * 1 * 2  # servers × pairs × sides, no warm-up
    assert result["ratio"] > 0 and result["anchor"].startswith("wget -r -l 1 ")


@pytest.mark.slow
def test_console_slots_quick(tmp_path: Path) -> None:
    result = run_quick("console_slots.py", tmp_path, "--sessions", "3", "--slots", "4",
                       "--seconds", "1")
    sides = [s["side"] for s in result["slots"]]
    assert sides == list("ABBA")
    frozen = [s for s in result["slots"] if s["side"] == "A"]
    live = [s for s in result["slots"] if s["side"] == "B"]
    assert all(s["console_cpu_s"] == 0 for s in frozen)  # stopped: it took nothing
    assert all(s["console_cpu_s"] > 0 and s["events_min"] > 0 for s in live)  # and then it lived
    assert result["summary"]["median_neighbour_ratio"] > 0


@pytest.mark.slow
def test_live_ingest_behind_nginx_quick(tmp_path: Path) -> None:
    result = run_quick("live_ingest.py", tmp_path, "--server", "nginx",
                       result="live_ingest_nginx.json")
    assert result["server"] == "nginx" and result["wrk"]["rps"] > 0
    assert result["behind_at_end"] == 0 and result["lag"]["samples"] > 0
    # every line of nginx's log stored (the embedded log also has the monitor's own probes)
    assert result["rows_per_source"]["nginx"] == result["lines_per_log"]["nginx"] > 0


@pytest.mark.slow
def test_a_benchmarked_process_is_charged_its_own_memory_not_the_benchmarks(
        tmp_path: Path) -> None:
    """``harness.run_to_end`` reports the peak memory of the command alone: a benchmark that
    holds 400 MB (a generated log) does not make a 30 MB child look like 400 MB; a command
    that fails raises with what it said."""
    if not Path("/usr/bin/time").exists():
        pytest.skip("falta GNU time (make deps instala «time»)")
    code = f"""
import sys; sys.path.insert(0, {str(ROOT / "bench")!r})
from pathlib import Path
from harness import run_to_end
held = bytearray(400 << 20)
held[::4096] = b"x" * len(held[::4096])
log = Path({str(tmp_path / "err.log")!r})
small = run_to_end([sys.executable, "-c", "b = bytearray(30 << 20); b[::4096] = b'y' * len(b[::4096])"], log)
try:
    run_to_end([sys.executable, "-c", "import sys; sys.exit('se negó')"], log)
except RuntimeError as exc:
    failed = str(exc)
print(small["peak_rss_mb"], small["seconds"], repr(failed))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    peak, seconds, failed = done.stdout.split(maxsplit=2)
    assert 30 < float(peak) < 100 and float(seconds) > 0
    assert "terminó con 1" in failed and "se negó" in failed
