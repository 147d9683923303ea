"""The portal's corte widget (docs/portal.md): ``/_difusor/corte.js`` and CORS on status.json.

In-process: the headers a browser needs (and does not get) for each origin. In node, when it is
installed: the script itself against a fake page, clock and network (text, zones, interval,
back-off, hidden pages). In headless Chromium (slow): a portal page on another origin shows the
live corte, follows a new one, and shows nothing of it when its origin is not allowed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess, Site, free_port, make_site, minimal_site
from rsgi_client import request

from difusor import config as config_mod
from difusor.serve.app import build_app

MAIN_CC = "no-cache, no-store, must-revalidate"
PORTAL = "https://www.medio.mx"
SCRIPT = Path(__file__).resolve().parents[1] / "src" / "difusor" / "serve" / "corte.js"
STATUS = "/_difusor/status.json"


def with_portals(site: Site, origins: list[str]) -> Site:
    """``site`` with ``[site] portal_origins`` set in its difusor.toml (and reloaded)."""
    text = site.config_path.read_text()
    assert "[site]\n" in text
    site.config_path.write_text(
        text.replace("[site]\n", f"[site]\nportal_origins = {json.dumps(origins)}\n", 1))
    site.cfg = config_mod.load(site.config_path)
    return site


@pytest.fixture
def app(site: Site):
    """The embedded server's app for a site whose portal is ``PORTAL``, one corte live."""
    with_portals(site, [PORTAL])
    site.publisher.publish(site.write_package("a.zip", minimal_site(hora="20:30")))
    return build_app(site.cfg)


# -- CORS on status.json, in-process --------------------------------------------------------


def test_status_json_is_readable_from_a_configured_portal(app) -> None:
    plain = request(app, STATUS)
    r = request(app, STATUS, headers={"Origin": PORTAL})
    assert r.status == 200 and r.body == plain.body
    assert json.loads(r.body)["corte"]["fecha_hora"] == "2024-12-08T20:30:00-06:00"
    assert r.header("Access-Control-Allow-Origin") == PORTAL
    assert r.header("Vary") == "Origin"
    assert r.header("Cache-Control") == MAIN_CC  # the contract's rule holds with CORS too
    assert r.header("Content-Type") == "application/json"
    assert r.header("Access-Control-Allow-Credentials") is None  # public data, no cookies
    head = request(app, STATUS, method="HEAD", headers={"Origin": PORTAL})
    assert head.header("Access-Control-Allow-Origin") == PORTAL


@pytest.mark.parametrize("origin", [None, "https://otro.mx", "http://www.medio.mx",
                                    "https://www.medio.mx.evil.mx", "https://www.medio.mx:8443",
                                    "null", "https://www.medio.mx/", "*"])
def test_other_origins_get_no_cors_header(app, origin: str | None) -> None:
    r = request(app, STATUS, headers={"Origin": origin} if origin else None)
    assert r.status == 200
    assert r.header("Access-Control-Allow-Origin") is None
    assert r.header("Vary") == "Origin"  # a cache must not hand one origin's answer to another
    assert r.header("Cache-Control") == MAIN_CC


def test_without_portal_origins_status_json_is_as_before(site: Site) -> None:
    site.publisher.publish(site.write_package("a.zip", minimal_site()))
    app = build_app(site.cfg)
    r = request(app, STATUS, headers={"Origin": PORTAL})
    assert r.status == 200 and r.header("Access-Control-Allow-Origin") is None
    assert r.header("Vary") is None
    pre = request(app, STATUS, method="OPTIONS", headers={"Origin": PORTAL})
    assert pre.status == 204 and pre.header("Access-Control-Allow-Origin") is None


def test_configured_origins_are_matched_as_browsers_send_them(site: Site) -> None:
    with_portals(site, ["https://WWW.Medio.MX:443", "http://127.0.0.1:8081"])
    app = build_app(site.cfg)  # no corte yet: status.json still answers (corte null)
    r = request(app, STATUS, headers={"Origin": PORTAL})
    assert r.header("Access-Control-Allow-Origin") == PORTAL
    assert json.loads(r.body)["corte"] is None
    local = request(app, STATUS, headers={"Origin": "http://127.0.0.1:8081"})
    assert local.header("Access-Control-Allow-Origin") == "http://127.0.0.1:8081"


def test_preflight_for_a_configured_portal(app) -> None:
    r = request(app, STATUS, method="OPTIONS",
                headers={"Origin": PORTAL, "Access-Control-Request-Method": "GET"})
    assert r.status == 204 and r.body == b""
    assert r.header("Access-Control-Allow-Origin") == PORTAL
    assert r.header("Access-Control-Allow-Methods") == "GET"
    assert int(r.header("Access-Control-Max-Age") or 0) >= 600
    assert r.header("Vary") == "Origin"


def test_preflight_from_elsewhere_is_not_allowed_and_other_paths_keep_405(app) -> None:
    r = request(app, STATUS, method="OPTIONS",
                headers={"Origin": "https://otro.mx", "Access-Control-Request-Method": "GET"})
    assert r.status == 204 and r.header("Access-Control-Allow-Origin") is None
    assert r.header("Allow") == "GET, HEAD, OPTIONS"
    for path in ("/json/main.json", "/_difusor/corte.js", "/_difusor/health", "/"):
        assert request(app, path, method="OPTIONS", headers={"Origin": PORTAL}).status == 405
    assert request(app, STATUS, method="POST", headers={"Origin": PORTAL}).status == 405


def test_corte_js_is_served_as_javascript(app) -> None:
    r = request(app, "/_difusor/corte.js")
    assert r.status == 200
    assert r.body == SCRIPT.read_bytes()
    assert r.header("Content-Type") == "text/javascript; charset=utf-8"
    assert r.header("Cache-Control") == MAIN_CC  # CONTRACT.md: no-cache rule, like main.json
    assert r.header("X-Content-Type-Options") == "nosniff"
    assert request(app, "/_difusor/corte.js", method="HEAD").status == 200
    # Text only, one request: nothing that writes markup, no address but its own status.json.
    code = r.body.decode()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "Function(", "importScripts", "XMLHttpRequest", "sendBeacon"):
        assert sink not in code, sink
    assert code.count("fetch(") == 1 and code.count("textContent =") == 1


# -- the script itself, in node with a fake page ---------------------------------------------

NODE = shutil.which("node") or shutil.which("nodejs")

# Runs corte.js in a vm context with a fake document, clock, timers and fetch; each scenario
# prints what a visitor would see and what the script did on the network.
HARNESS = r"""
const vm = require("vm"), fs = require("fs");
const SRC = fs.readFileSync(process.argv[process.argv.length - 1], "utf8");
const flush = () => new Promise((r) => setImmediate(r));

function page(opts) {
  let now = 1e9, tid = 0;
  const timers = [], fetches = [], listeners = {}, attrs = {};
  const el = {textContent: opts.fallback || "", writes: 0,
    setAttribute(k, v) { attrs[k] = String(v); }, getAttribute(k) { return k in attrs ? attrs[k] : null; },
    hasAttribute(k) { return k in attrs; }};
  for (const k of ["innerHTML", "outerHTML"])
    Object.defineProperty(el, k, {get() { throw new Error(k); }, set() { throw new Error(k); }});
  const document = {hidden: !!opts.hidden, readyState: "complete", documentElement: {},
    currentScript: {src: opts.src || "https://prep.example.mx/_difusor/corte.js",
                    getAttribute: (k) => (k === "data-intervalo" ? (opts.intervalo ?? null) : null)},
    querySelectorAll: (sel) => (sel.includes("[data-difusor-corte]") ? [el] : []),
    addEventListener(t, f) { (listeners[t] ||= []).push(f); }};
  const responses = (opts.responses || []).slice();
  const ctx = {document, console, URL, AbortController,
    Date: {now: () => now},
    setTimeout(f, ms) { timers.push({id: ++tid, f, at: now + ms, ms}); return tid; },
    clearTimeout(id) { const i = timers.findIndex((t) => t.id === id); if (i >= 0) timers.splice(i, 1); },
    addEventListener(t, f) { (listeners["window:" + t] ||= []).push(f); },
    fetch(url, init) {
      fetches.push({url, cache: init.cache, credentials: init.credentials, at: now});
      const r = responses.length ? responses.shift() : "down";
      if (r === "down") return Promise.reject(new TypeError("Failed to fetch"));
      return Promise.resolve({ok: r.status === undefined || r.status < 300, status: r.status || 200,
                              json: () => Promise.resolve(r.body)});
    }};
  ctx.window = ctx;
  vm.createContext(ctx);
  vm.runInContext(SRC, ctx);
  const p = {
    el, attrs, fetches, timers, document, again: () => vm.runInContext(SRC, ctx),
    get now() { return now; },
    async settle() { await flush(); await flush(); },
    next() { timers.sort((a, b) => a.at - b.at); return timers[0]; },
    async fire() {  // the clock jumps to the next timer, which runs
      const t = p.next(); timers.splice(timers.indexOf(t), 1); now = t.at; t.f(); await p.settle();
      return t.ms;
    },
    async visible(hidden) {
      now += 1000; document.hidden = hidden; for (const f of listeners.visibilitychange || []) f();
      await p.settle();
    },
    seen() { return {text: el.textContent, estado: attrs["data-estado"] || null}; },
  };
  return p;
}

const doc = (fecha, zona, extra) => ({body: {corte: fecha === null ? null : {id: "c1", fecha_hora: fecha,
  publicado: "2024-12-08T20:31:02-06:00", paquete_sha256: "ab"}, zona, ...(extra || {})}});

(async () => {
  const out = {};
  // What a visitor reads, for status documents of several zones and shapes.
  out.texts = {};
  const cases = {
    centro: doc("2024-12-08T20:30:00-06:00", "America/Mexico_City"),
    micro: doc("2024-12-08T20:30:05.123456-06:00", "America/Mexico_City"),
    sureste: doc("2024-06-02T23:05:00-05:00", "America/Cancun"),
    pacifico: doc("2024-06-02T19:00:00-07:00", "America/Mazatlan"),
    tijuana_verano: doc("2024-06-02T18:00:00-07:00", "America/Tijuana"),
    tijuana: doc("2024-12-08T18:00:00-08:00", "America/Tijuana"),
    utc: doc("2024-12-09T02:30:00+00:00", "UTC"),
    z: doc("2024-12-09T02:30:00Z", "America/Mexico_City"),
    desconocida: doc("2024-12-08T20:30:00-06:00", "Europe/Madrid"),
    sin_corte: doc(null, "America/Mexico_City"),
    marcado: doc("<img src=x onerror=alert(1)>", "America/Mexico_City"),
    raro: {body: {hola: 1}},
    lista: {body: [1, 2]},
    http_404: {status: 404, body: {corte: null}},
    caido: "down",
  };
  for (const [name, r] of Object.entries(cases)) {
    const p = page({responses: [r], fallback: "Consulta el PREP"});
    await p.settle();
    out.texts[name] = {...p.seen(), role: p.attrs.role, live: p.attrs["aria-live"]};
  }
  // The request: its URL from the script's own address, never cached, no cookies.
  const q = page({src: "https://cdn.medio.mx/prep/_difusor/corte.js?v=2", responses: [cases.centro]});
  await q.settle();
  out.request = q.fetches[0];
  // The interval: data-intervalo in seconds, 60 by default, between 5 and 600.
  out.intervals = {};
  for (const v of [null, "1", "5", "30", "abc", "-3", "100000"]) {
    const p = page({intervalo: v, responses: [cases.centro]});
    await p.settle();
    out.intervals[String(v)] = p.next().ms;
  }
  // Errors: the last corte stays on screen, marked; waits double up to 5 min, then recover.
  const b = page({responses: [cases.centro, "down", "down", "down", "down", "down", cases.sureste]});
  await b.settle();
  out.backoff = [b.next().ms];
  const shown = [];
  for (let i = 0; i < 6; i++) { await b.fire(); out.backoff.push(b.next().ms); shown.push(b.seen()); }
  out.backoff_shown = shown;
  // Hidden: the timer does not poll; becoming visible polls at once (not sooner than 5 s apart).
  const h = page({intervalo: "60", responses: [cases.centro, cases.sureste, cases.tijuana]});
  await h.settle();
  await h.visible(true);
  await h.fire();
  out.hidden = {fetches_after_timer: h.fetches.length, timers_left: h.timers.length};
  await h.visible(false);
  out.hidden.fetches_when_visible = h.fetches.length;
  out.hidden.shown = h.seen().text;
  await h.visible(true);
  await h.visible(false);  // 2 s after the last poll: waits for the rest of the 5 s
  out.hidden.fetches_soon_after = h.fetches.length;
  out.hidden.wait_ms = h.next().ms;
  // Started on a hidden page (a tab opened in the background): nothing until it is shown.
  const g = page({hidden: true, responses: [cases.centro]});
  await g.settle();
  out.background = {fetches: g.fetches.length};
  await g.visible(false);
  out.background.after = {fetches: g.fetches.length, ...g.seen()};
  // Included twice on one page: one poller.
  const twice = page({responses: [cases.centro, cases.centro]});
  await twice.settle();
  twice.again();
  await twice.settle();
  out.twice = twice.fetches.length;
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.fixture(scope="module")
def node_run() -> dict:
    if not NODE:
        pytest.skip("falta node (Debian: apt install nodejs)")
    done = subprocess.run([NODE, "-e", HARNESS, "--", str(SCRIPT)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_widget_text_is_the_cortes_own_time_and_zone(node_run: dict) -> None:
    t = {name: seen["text"] for name, seen in node_run["texts"].items()}
    assert t["centro"] == "Corte: 08/12/2024 20:30 h (hora del centro)"
    assert t["micro"] == "Corte: 08/12/2024 20:30 h (hora del centro)"
    assert t["sureste"] == "Corte: 02/06/2024 23:05 h (hora del sureste)"
    assert t["pacifico"] == "Corte: 02/06/2024 19:00 h (hora del Pacífico)"
    assert t["tijuana"] == "Corte: 08/12/2024 18:00 h (hora del noroeste)"
    # An offset that is not the zone's usual one is stated as it is, never converted.
    assert t["tijuana_verano"] == "Corte: 02/06/2024 18:00 h (UTC\u221207:00)"
    assert t["utc"] == t["z"] == "Corte: 09/12/2024 02:30 h (UTC+00:00)"
    assert t["desconocida"] == "Corte: 08/12/2024 20:30 h (UTC\u221206:00)"
    assert t["sin_corte"] == "Sin corte publicado"
    for name, seen in node_run["texts"].items():
        assert seen["role"] == "status" and seen["live"] == "polite", name
        assert seen["estado"] == ("ok" if name in ("centro", "micro", "sureste", "pacifico",
                                                   "tijuana", "tijuana_verano", "utc", "z",
                                                   "desconocida", "sin_corte") else "error"), name


def test_widget_never_shows_what_is_not_a_corte(node_run: dict) -> None:
    # Markup in the data, another document, an error page, no network: said plainly, as text.
    for name in ("marcado", "raro", "lista", "http_404", "caido"):
        assert node_run["texts"][name]["text"] == "Corte: no disponible", name


def test_widget_asks_its_own_site_without_cache_or_cookies(node_run: dict) -> None:
    req = node_run["request"]
    assert req["url"] == "https://cdn.medio.mx/prep/_difusor/status.json"
    assert req["cache"] == "no-store" and req["credentials"] == "omit"


def test_widget_interval_is_bounded(node_run: dict) -> None:
    def near(ms: float, seconds: float) -> bool:
        # ±10 % so a portal's readers spread out, never under the 5 s floor
        return max(5000, seconds * 900) <= ms <= seconds * 1100

    expected = {"null": 60, "1": 5, "5": 5, "30": 30, "abc": 60, "-3": 5, "100000": 600}
    for given, seconds in expected.items():
        assert near(node_run["intervals"][given], seconds), (given, node_run["intervals"][given])


def test_widget_backs_off_and_keeps_the_last_corte(node_run: dict) -> None:
    waits = [round(ms / 1000 / s) for ms, s in zip(node_run["backoff"],
                                                   [60, 120, 240, 300, 300, 300, 60], strict=True)]
    assert waits == [1] * 7, node_run["backoff"]
    shown = node_run["backoff_shown"]
    assert all(s == {"text": "Corte: 08/12/2024 20:30 h (hora del centro)", "estado": "error"}
               for s in shown[:5])
    assert shown[5] == {"text": "Corte: 02/06/2024 23:05 h (hora del sureste)", "estado": "ok"}


def test_widget_pauses_while_hidden_and_polls_when_shown(node_run: dict) -> None:
    h = node_run["hidden"]
    assert h["fetches_after_timer"] == 1 and h["timers_left"] == 0  # hidden: nothing scheduled
    assert h["fetches_when_visible"] == 2  # shown again: asks at once
    assert h["shown"] == "Corte: 02/06/2024 23:05 h (hora del sureste)"
    assert h["fetches_soon_after"] == 2 and 2500 <= h["wait_ms"] <= 3500  # not more than 1/5 s
    bg = node_run["background"]
    assert bg["fetches"] == 0
    assert bg["after"] == {"fetches": 1, "text": "Corte: 08/12/2024 20:30 h (hora del centro)",
                           "estado": "ok"}
    assert node_run["twice"] == 1  # the script included twice polls once


# -- a real browser: a portal on another origin ----------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)


class Portal:
    """The outlet's site: a few HTML pages on its own loopback port (another origin)."""

    def __init__(self) -> None:
        self.pages: dict[str, bytes] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path.split("?", 1)[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body or b"no")

            def log_message(self, *_args: object) -> None:
                pass

        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def page(self, path: str, difusor: str, intervalo: int) -> str:
        self.pages[path] = f"""<!doctype html>
<html lang="es"><meta charset="utf-8"><link rel="icon" href="data:,"><title>Medio</title>
<script>window.vis = []; document.addEventListener("visibilitychange",
  function () {{ window.vis.push(document.visibilityState); }});</script>
<h1>Resultados</h1>
<p>PREP: <span id="corte" data-difusor-corte>Consulta el PREP</span></p>
<iframe src="{difusor}/" title="PREP" width="600" height="200" loading="eager"></iframe>
<script src="{difusor}/_difusor/corte.js" data-intervalo="{intervalo}" async></script>
""".encode()
        return self.origin + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chromium() -> Iterator:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("falta chromium o chromedriver (Debian: apt install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def portals() -> Iterator[tuple[Portal, Portal]]:
    allowed, refused = Portal(), Portal()
    try:
        yield allowed, refused
    finally:
        allowed.close()
        refused.close()


def _until(predicate, timeout: float, what: str):
    """The predicate's first true value, polled until ``timeout``; fails naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"no ocurrió a tiempo ({timeout:g} s): {what}")
        time.sleep(0.05)


def _errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


@pytest.mark.slow
def test_portal_on_another_origin_shows_and_follows_the_live_corte(
        tmp_path: Path, portals: tuple[Portal, Portal], chromium) -> None:
    allowed, refused = portals
    site = with_portals(make_site(tmp_path / "difusor"), [allowed.origin])
    try:
        site.publisher.publish(site.write_package("a.zip", minimal_site(hora="20:30")))
        _host, port = config_mod.parse_address(site.cfg.web.listen)
        server = ServerProcess(site.config_path, port).start()
        try:
            _portal_session(site, server.url, allowed, refused, chromium)
        finally:
            server.stop()
    finally:
        site.ledger.close()


def _portal_session(site: Site, difusor: str, allowed: Portal, refused: Portal, driver) -> None:
    def shown() -> str:  # ("" while the portal's page is not there yet: waited for, not a failure)
        return "".join(e.text for e in driver.find_elements("id", "corte"))

    def live() -> str:
        return json.loads(httpx.get(difusor + STATUS, timeout=2).content)["corte"]["fecha_hora"]

    def publish(name: str, hora: str) -> float:
        site.publisher.publish(site.write_package(name, minimal_site(hora=hora)))
        assert live() == f"2024-12-08T{hora}:00-06:00"  # the server already serves it
        return time.monotonic()

    # The portal's page, on another origin, shows the live corte beside the embedded PREP.
    driver.get(allowed.page("/", difusor, 5))
    _until(lambda: shown() == "Corte: 08/12/2024 20:30 h (hora del centro)", 20,
           "el portal muestra el corte en línea")
    span = driver.find_element("id", "corte")
    assert span.get_attribute("role") == "status" and span.get_attribute("aria-live") == "polite"
    assert span.get_attribute("data-estado") == "ok"
    driver.switch_to.frame(driver.find_element("tag name", "iframe"))
    assert driver.execute_script("return document.title") == "PREP"  # the PREP in a frame
    driver.switch_to.default_content()

    # A new corte: on screen within one poll (5 s, ±10 %), without reloading the page.
    since = publish("b.zip", "20:40")
    _until(lambda: shown() == "Corte: 08/12/2024 20:40 h (hora del centro)", 20,
           "el portal muestra el corte nuevo")
    assert time.monotonic() - since < 9, "tardó más de una consulta"

    # A slow page (60 s) hidden behind another tab asks again as soon as it is shown.
    driver.get(allowed.page("/lento", difusor, 60))
    _until(lambda: shown() == "Corte: 08/12/2024 20:40 h (hora del centro)", 20,
           "la página lenta muestra el corte")
    page = driver.current_window_handle
    driver.switch_to.new_window("tab")
    publish("c.zip", "20:50")
    other = driver.current_window_handle
    driver.switch_to.window(page)
    assert driver.execute_script("return window.vis") == ["hidden", "visible"]
    _until(lambda: shown() == "Corte: 08/12/2024 20:50 h (hora del centro)", 8,
           "al volver a la pestaña, el corte nuevo (sin esperar 60 s)")
    driver.switch_to.window(other)
    driver.close()
    driver.switch_to.window(page)
    assert _errors(driver) == []  # nothing went wrong in the console, frame included

    # A portal whose origin is not in portal_origins: the browser refuses to hand it the data.
    driver.get(refused.page("/", difusor, 5))
    _until(lambda: driver.find_element("id", "corte").get_attribute("data-estado") == "error",
           20, "el portal no autorizado falla")
    assert shown() == "Corte: no disponible"
    errors = " ".join(_errors(driver))
    assert "Access-Control-Allow-Origin" in errors and "CORS" in errors, errors
