/* difusor: cookie-less visible-time beacon for the outlet's page that embeds the PREP.
   <script async src="https://DIFUSOR/_difusor/beacon.js"></script> — sends, when the page is
   hidden or left, the milliseconds it was visible and its path; nothing else, no cookie. */
(function () {
  var me = document.currentScript;
  if (!me || !navigator.sendBeacon) return;
  var base = me.src.replace(/\/_difusor\/beacon\.js([?#].*)?$/, "");
  var visible = 0, since = document.visibilityState === "visible" ? Date.now() : 0;
  function send() {
    if (since) { visible += Date.now() - since; since = 0; }
    if (visible <= 0) return;
    navigator.sendBeacon(base + "/_difusor/b?p=" + encodeURIComponent(location.pathname) +
                         "&v=" + Math.round(visible));
    visible = 0;
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { since = Date.now(); } else { send(); }
  });
  window.addEventListener("pagehide", send);
})();
