/* difusor: the live corte's date and time, for the outlet's portal page that embeds the PREP
   (convocatoria: shown "en todo momento"). docs/portal.md:
     <script src="https://SITIO/_difusor/corte.js" async></script>
     <span data-difusor-corte></span>   (or <difusor-corte></difusor-corte>)
   Polls SITIO/_difusor/status.json (the portal's origin must be in [site] portal_origins) every
   data-intervalo seconds (default 60, never under 5), paused while the page is hidden; writes
   text only, never markup. */
(function () {
  "use strict";
  var me = document.currentScript;  // only while this script runs: read it now
  if (!me || !me.src || !window.fetch) return;
  var base = me.src.replace(/\/_difusor\/corte\.js(?:[?#].*)?$/, "");
  if (base === me.src) base = new URL(me.src).origin;
  var url = base + "/_difusor/status.json";
  var seen = window.__difusorCorte = window.__difusorCorte || {};
  if (seen[url]) return;  // included twice: one poller is enough
  seen[url] = 1;

  var MIN = 5, DEFAULT = 60, MAX = 600, BACKOFF_MAX = 300, TIMEOUT = 10;
  var every = Math.round(parseFloat(me.getAttribute("data-intervalo")));
  every = 1000 * (every >= MIN ? Math.min(every, MAX) : every < MIN ? MIN : DEFAULT);
  var SELECTOR = "[data-difusor-corte],difusor-corte";
  // The Mexican zones by name, said only when the corte's own offset is that zone's.
  var ZONES = {"America/Mexico_City": "centro", "America/Monterrey": "centro",
               "America/Merida": "centro", "America/Bahia_Banderas": "centro",
               "America/Chihuahua": "centro", "America/Cancun": "sureste",
               "America/Mazatlan": "Pac\u00edfico", "America/Hermosillo": "Pac\u00edfico",
               "America/Tijuana": "noroeste"};
  var OFFSETS = {"centro": "-06:00", "sureste": "-05:00", "Pac\u00edfico": "-07:00",
                 "noroeste": "-08:00"};
  var ISO = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::\d\d(?:\.\d+)?)?(Z|[+-]\d\d:\d\d)$/;

  var text = null, state = "", timer = 0, busy = false, fails = 0, started = -1e12, queued = false;

  // The corte as given (its own offset, never the browser's zone); null: not a status document.
  function label(doc) {
    if (!doc || typeof doc !== "object") return null;
    var corte = doc.corte;
    if (corte === null) return "Sin corte publicado";
    var m = corte && typeof corte.fecha_hora === "string" && ISO.exec(corte.fecha_hora);
    if (!m) return null;
    var offset = m[6] === "Z" ? "+00:00" : m[6];
    var zone = ZONES[doc.zona];
    var where = zone && OFFSETS[zone] === offset ? "hora del " + zone
      : "UTC" + offset.replace("-", "\u2212");
    return "Corte: " + m[3] + "/" + m[2] + "/" + m[1] + " " + m[4] + ":" + m[5] + " h (" + where + ")";
  }

  function paint() {
    var found = document.querySelectorAll(SELECTOR);
    for (var i = 0; i < found.length; i++) {
      var el = found[i];
      // A live region must exist before its text changes for a screen reader to announce it.
      if (!el.hasAttribute("role")) el.setAttribute("role", "status");
      if (!el.hasAttribute("aria-live")) el.setAttribute("aria-live", "polite");
      if (state && el.getAttribute("data-estado") !== state) el.setAttribute("data-estado", state);
      if (text !== null && el.textContent !== text) el.textContent = text;  // text, never markup
    }
  }

  function show(value, how) {
    text = value;
    state = how;
    paint();
  }

  function later(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }

  function poll() {
    if (busy || document.hidden) return;  // hidden: visibilitychange resumes
    var since = Date.now() - started;
    if (since >= 0 && since < MIN * 1000) return later(MIN * 1000 - since);
    busy = true;
    started = Date.now();
    var abort = window.AbortController ? new AbortController() : null;
    var stop = abort && setTimeout(function () { abort.abort(); }, TIMEOUT * 1000);
    fetch(url, {cache: "no-store", credentials: "omit", signal: abort ? abort.signal : undefined})
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (doc) {
        var value = label(doc);
        if (value === null) throw new Error("status.json inesperado");
        fails = 0;
        show(value, "ok");
      })
      .catch(function () {
        fails++;  // keep the last corte shown; say so to styles through data-estado
        show(text === null ? "Corte: no disponible" : text, "error");
      })
      .then(function () {
        clearTimeout(stop);
        busy = false;
        var wait = fails ? Math.min(every * Math.pow(2, fails), Math.max(every, BACKOFF_MAX * 1000))
          : every;
        // ±10 % spreads the portal's readers apart; never under the floor.
        later(Math.max(MIN * 1000, wait * (0.9 + 0.2 * Math.random())));
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) poll();
  });
  window.addEventListener("online", poll);
  if (window.MutationObserver) {  // elements a single-page portal adds later
    new MutationObserver(function () {
      if (queued) return;
      queued = true;
      setTimeout(function () { queued = false; paint(); }, 0);
    }).observe(document.documentElement, {childList: true, subtree: true});
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", paint);
  paint();
  poll();
})();
