"""Simulated visitors: each from its own loopback address, loading the page, polling
``json/main.json`` as the site's script does, and now and then opening a casilla."""

from __future__ import annotations

import random
import threading

import httpx

_AGENTS = [
    "Mozilla/5.0 (Linux; Android 14; SM-A546E) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
]
_PAGE = ("", "assets/estilo.css", "assets/app.js")


def visitors(base_url: str, count: int, poll_seconds: float, stop: threading.Event) -> list[threading.Thread]:
    threads = [threading.Thread(target=_visit, args=(base_url, n, poll_seconds, stop), daemon=True,
                                name=f"visitante-{n}") for n in range(count)]
    for t in threads:
        t.start()
    return threads


def _visit(base_url: str, n: int, poll_seconds: float, stop: threading.Event) -> None:
    rng = random.Random(n)
    address = f"127.0.{1 + n // 250}.{1 + n % 250}"
    headers = {"User-Agent": rng.choice(_AGENTS), "Accept-Encoding": "gzip, br"}
    if stop.wait(rng.uniform(0, poll_seconds)):  # arrivals spread out
        return
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(base_url=base_url, transport=transport, headers=headers, timeout=5) as http:
        while not stop.is_set():
            try:
                for path in _PAGE:
                    http.get(path)
                for _ in range(rng.randint(2, 12)):  # stays a few polls, then leaves
                    main = http.get("json/main.json")
                    if main.status_code == 200 and rng.random() < 0.3:
                        casillas = main.json().get("casillas") or []
                        if casillas:
                            http.get(f"json/casillas/{rng.choice(casillas)}.json")
                    if stop.wait(poll_seconds):
                        return
            except httpx.HTTPError:
                pass
            if stop.wait(rng.uniform(poll_seconds, 4 * poll_seconds)):  # and maybe comes back
                return
