// The console's page: renders what /eventos pushes, and sends the operator's actions.
// Every value is set with textContent (never innerHTML): text typed by anyone stays text.
"use strict";

const $ = (id) => document.getElementById(id);
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
let state = null;
let charts = null;

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c === null || c === undefined ? "" : c);
  return node;
}

function fill(id, nodes) { $(id).replaceChildren(...nodes); }

function hour(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString("es-MX", { timeZone: state ? state.sitio.zona : undefined,
    day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function span(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.abs(seconds);
  if (s < 60) return `${seconds.toFixed(s < 10 ? 2 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  if (s < 86400 * 2) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function say(text, bad) {
  const box = $("aviso");
  box.textContent = text;
  box.className = bad ? "aviso malo" : "aviso";
  box.hidden = false;
}

async function act(path, body) {
  const r = await fetch(path, { method: "POST", credentials: "same-origin",
    headers: { "content-type": "application/json", "x-csrf-token": CSRF },
    body: JSON.stringify(body || {}) });
  let doc = {};
  try { doc = await r.json(); } catch (e) { doc = { error: `respuesta ${r.status}` }; }
  if (!r.ok) { say(doc.error || `falló (${r.status})`, true); throw new Error(doc.error); }
  if (doc.mensaje) say(doc.mensaje, false);
  return doc;
}

function confirmDialog(title, lines) {
  return new Promise((resolve) => {
    const dialog = $("confirmar");
    $("confirmar-titulo").textContent = title;
    fill("confirmar-texto", lines.map((l) => el("p", {}, l)));
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "si"), { once: true });
    dialog.showModal();
  });
}

// -- rendering -------------------------------------------------------------------------

function renderBanner(s) {
  const e = s.estado;
  $("banner").className = "estado-" + e.estado.replace(" ", "-").normalize("NFD").replace(/[\u0300-\u036f]/g, "");
  $("estado").textContent = e.estado.toUpperCase();
  $("porque").textContent = e.por_que.join(" · ");
  $("fase").textContent = s.fase.fase + (s.fase.simulacro ? ` «${s.fase.simulacro}»` : "") + ` (${s.fase.origen})`;
  $("sitio").textContent = s.sitio.nombre + (s.sitio.sitio ? ` · ${s.sitio.sitio}` : "");
  $("reloj").textContent = hour(s.ahora);
}

function renderCorte(s) {
  const c = s.corte;
  $("corte-id").textContent = c ? c.corte : "sin corte en línea";
  $("corte-hora").textContent = c ? hour(c.hora_autoridad) : "—";
  const age = c ? (Date.parse(s.ahora) - Date.parse(c.hora_autoridad)) / 1000 : null;
  $("corte-edad").textContent = span(age);
  $("corte-edad").className = age !== null && age > s.cadencia_s + s.tolerancia_s ? "tarde" : "";
  $("corte-recibido").textContent = c ? hour(c.recibido) : "—";
  $("corte-linea").textContent = c ? hour(c.en_linea) : "—";
  $("corte-borde").textContent = c && c.verificado_borde ? `${hour(c.verificado_borde)} (${span(c.retraso_borde_s)})` : "—";
  $("corte-retraso").textContent = c ? span(c.retraso_s) : "—";
  $("corte-cambiados").textContent = c && c.cambiados !== null ? `${c.cambiados} de ${c.archivos}` : (c ? `${c.archivos} archivos` : "—");
  $("corte-verif").textContent = c && c.verificaciones !== null ? String(c.verificaciones) : "—";
}

// The list of cortes (with its buttons) and the refused packages: they change only with a corte.
function renderCortes(s) {
  const live = s.corte ? s.corte.corte : null;
  fill("cortes", s.cortes.map((r) => el("tr", { "data-corte": r.corte, class: r.corte === live ? "vivo" : "" },
    el("td", {}, r.corte), el("td", {}, hour(r.hora_autoridad)), el("td", {}, hour(r.recibido)),
    el("td", {}, hour(r.en_linea)), el("td", { class: "retraso" }, span(r.retraso_s)),
    el("td", {}, span(r.retraso_borde_s)), el("td", {}, r.cambiados === null ? "—" : String(r.cambiados)),
    el("td", {}, r.corte === live ? "en línea" : el("button", { type: "button", class: "volver", "data-corte": r.corte }, "volver a este")))));
  fill("rechazados", s.rechazados.length ? s.rechazados.map((r) => el("li", {}, `${hour(r.recibido)} ${r.paquete}: ${r.motivo}`))
    : [el("li", {}, "ninguno")]);
}

// The log reader yields the processor to the web server: on a saturated machine it falls behind.
function trafficAge(s) {
  const age = Math.round(Date.parse(s.ahora) / 1000 - s.trafico.al);
  return age > 5 ? age : 0;
}

function renderTraffic(s) {
  const t = s.trafico;
  $("rps").textContent = t.peticiones_s.toLocaleString("es-MX");
  const c = t.por_clase;
  $("clases").textContent = `${c["2xx"]} · ${c["3xx"]} · ${c["4xx"]} · ${c["5xx"]}`;
  $("p95").textContent = t.p95_ms === null ? "—" : `${t.p95_ms} ms`;
  $("visitantes").textContent = t.visitantes_5min.toLocaleString("es-MX");
  $("cdn").textContent = t.cdn && t.cdn.absorbido !== null ? `${(t.cdn.absorbido * 100).toFixed(1)} %` : "—";
  $("cdn").title = t.cdn ? "" : "sin registros del borde ([[analytics.sources]] de la CDN)";
  fill("paginas", t.paginas.map(([p, n]) => el("li", {}, `${p} (${n})`)));
  fill("vistas", t.vistas.map(([p, n]) => el("li", {}, `${p} (${n})`)));
  const age = trafficAge(s);
  $("trafico-atraso").hidden = !age;
  $("trafico-atraso").textContent = age ? `Cifras de hace ${age} s: la lectura de los registros cede el procesador al servidor web.` : "";
}

function renderShield(s) {
  const sh = s.escudo;
  $("modo-ataque").textContent = !sh.enabled ? "apagado" : sh.attack_mode.on ? "MODO ATAQUE" : "normal";
  $("modo-ataque").className = sh.attack_mode.on ? "etiqueta rojo" : "etiqueta";
  $("ataque").textContent = sh.attack_mode.on ? "Quitar modo ataque" : "Modo ataque";
  const rows = [...sh.bans.map((b) => [b, "bloqueo"]), ...sh.throttles.map((b) => [b, "límite"])];
  fill("bloqueos", rows.length ? rows.slice(0, 100).map(([b, kind]) => el("tr", { "data-llave": b.key, "data-tipo": kind },
    el("td", {}, b.key), el("td", {}, kind), el("td", {}, b.reason),
    el("td", {}, b.until ? hour(new Date(b.until * 1000).toISOString()) : "—"),
    el("td", {}, b.by === "operator" ? "operador" : "automático"),
    el("td", {}, el("button", { type: "button", class: "desbloquear", "data-llave": b.key }, "desbloquear"))))
    : [el("tr", {}, el("td", { colSpan: 6 }, "sin bloqueos ni límites"))]);
  $("lista-blanca").textContent = sh.allow.length ? "Lista blanca: " + sh.allow.join(", ") : "";
}

function renderRest(s) {
  fill("origenes-lista", s.origenes.map((o) => el("li", {}, `${o.nombre}: ${o.corte || "—"}${o.cambio ? " (cambió " + hour(o.cambio) + ")" : ""}${o.fuera ? " FUERA DE ROTACIÓN" : ""}${o.desde ? " desde " + hour(o.desde) : ""}`)));
  $("revision").textContent = s.revision ? `Última revisión de la convocatoria: ${hour(s.revision.at)} — ${s.revision.mensaje}` : "Sin revisión de la convocatoria todavía.";
  fill("purgas", s.cdn.map((p) => el("li", {}, `${hour(p.at)} ${p.mensaje}`)));
  fill("acciones", s.acciones.map((a) => el("li", {}, `${hour(a.at)} ${a.mensaje}`)));
  fill("incidentes-lista", s.incidentes.length ? s.incidentes.slice(0, 12).map((i) => el("li", { class: i.en_curso ? "abierto" : "" },
    el("strong", {}, `n.º ${i.id} ${i.titulo || i.tipo_texto}`), ` — ${i.estado_texto}, ${hour(i.inicio)}, ${span(i.duracion_s)}`,
    el("br", {}), `causa: ${i.causa || "por registrar"} · impacto: ${i.impacto || "por registrar"}`))
    : [el("li", {}, "sin incidentes")]);
  const u = s.disponibilidad;
  $("disponibilidad").textContent = u && u.disponibilidad_pct !== null
    ? `${u.disponibilidad_pct} % desde ${hour(u.desde)} (cobertura ${u.cobertura_pct} %, peor caso ${u.disponibilidad_peor_caso_pct} %; meta ${u.meta_pct} %)`
    : "sin sondeos todavía";
  fill("sondeos", s.monitor.map((p) => el("li", { class: p.ok ? "" : "malo" }, `${p.objetivo} (${p.punto}): ${p.ok ? "bien" : p.falla} · ${p.latencia_ms === null ? "—" : Math.round(p.latencia_ms) + " ms"}`)));
  const now = Date.parse(s.ahora);
  fill("cuentas-lista", s.cuentas.length ? s.cuentas.map((c) => {
    const left = (Date.parse(c.at) - now) / 1000;
    return el("li", {}, `${c.que}: ${left > 0 ? "faltan " + span(left) : "hace " + span(-left)} (${hour(c.at)})`);
  }) : [el("li", {}, "sin calendario ([operation])")]);
}

// A part is redrawn only when what it shows changed: a button under the operator's finger is
// not replaced four times a second.
const drawn = {};
function part(name, data, draw) {
  const key = JSON.stringify(data);
  if (drawn[name] === key) return;
  drawn[name] = key;
  draw();
}

function render(s) {
  state = s;
  const minute = s.ahora.slice(0, 16);
  renderBanner(s);
  part("corte", [s.corte, s.ahora.slice(0, 18)], () => renderCorte(s));  // its age, every 10 s
  part("cortes", [s.corte && s.corte.corte, s.cortes, s.rechazados], () => renderCortes(s));
  part("trafico", [s.trafico, trafficAge(s)], () => renderTraffic(s));
  part("escudo", [s.escudo.bans, s.escudo.throttles, s.escudo.allow, s.escudo.attack_mode, s.escudo.enabled], () => renderShield(s));
  part("resto", [s.origenes, s.cdn, s.revision, s.acciones, s.incidentes, s.disponibilidad, s.monitor, s.cuentas, minute], () => renderRest(s));
}

function renderSeries(series) {
  if (typeof uPlot === "undefined") return;
  const width = Math.max(280, $("trafico").clientWidth - 32);
  const traffic = [series.t, series.rps, series.e4, series.e5];
  const latency = [series.t, series.p95];
  if (!charts) {
    // The axes in the site's zone, as every time on the page (not the browser's).
    const tzDate = (ts) => uPlot.tzDate(new Date(ts * 1e3), state ? state.sitio.zona : "America/Mexico_City");
    charts = [
      new uPlot({ width, height: 180, tzDate, title: "peticiones/s (última hora)", series: [{},
        { label: "total", stroke: "#1f5fa8" }, { label: "4xx", stroke: "#c77c00" }, { label: "5xx", stroke: "#b00020" }] },
        traffic, $("grafica-trafico")),
      new uPlot({ width, height: 140, tzDate, title: "p95 de latencia (ms)", series: [{}, { label: "p95", stroke: "#5b2a86" }] },
        latency, $("grafica-latencia")),
    ];
  } else {
    charts[0].setData(traffic);
    charts[1].setData(latency);
  }
}

// -- actions ---------------------------------------------------------------------------

function formBody(form) { return Object.fromEntries(new FormData(form).entries()); }

function wire() {
  $("form-bloquear").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const b = formBody(ev.target);
    await act("api/escudo", { accion: "block", llave: b.llave, minutos: Number(b.minutos), motivo: b.motivo });
    ev.target.reset();
  });
  $("permitir").addEventListener("click", async () => {
    const key = $("form-bloquear").elements.llave.value;
    if (key) await act("api/escudo", { accion: "allow", llave: key });
  });
  $("ataque").addEventListener("click", async () => {
    const on = !(state && state.escudo.attack_mode.on);
    if (await confirmDialog(on ? "¿Activar el modo ataque?" : "¿Quitar el modo ataque?",
      [on ? "Solo se sirven archivos en memoria y los límites son más estrictos." : "Vuelven los límites normales."]))
      await act("api/escudo", { accion: on ? "attack-on" : "attack-off" });
  });
  $("bloqueos").addEventListener("click", async (ev) => {
    const key = ev.target.dataset && ev.target.dataset.llave;
    if (ev.target.classList.contains("desbloquear") && key) await act("api/escudo", { accion: "unblock", llave: key });
  });
  $("cortes").addEventListener("click", async (ev) => {
    const corte = ev.target.classList.contains("volver") && ev.target.dataset.corte;
    if (!corte) return;
    const p = await act("api/vuelta-atras/vista-previa", { corte });
    const lines = [`En línea ahora: ${p.en_linea}. Pasará a estar en línea: ${p.corte}.`,
      `Cambian ${p.cambian} archivos y se quitan ${p.se_quitan}.`];
    if (p.ejemplos.length) lines.push("Por ejemplo: " + p.ejemplos.join(", "));
    if (await confirmDialog(`¿Volver al corte ${p.corte}?`, lines)) await act("api/vuelta-atras", { corte });
  });
  $("purgar").addEventListener("click", async () => {
    if (await confirmDialog("¿Purgar la CDN?", ["Se purga lo que cambió en el corte en línea y main.json, y se comprueba en el borde."]))
      await act("api/purga");
  });
  $("revisar").addEventListener("click", () => act("api/revision"));
  $("form-incidente").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    await act("api/incidentes", formBody(ev.target));
    ev.target.reset();
  });
  $("form-editar").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const b = formBody(ev.target);
    const n = b.numero; delete b.numero;
    await act(`api/incidentes/${encodeURIComponent(n)}`, b);
    ev.target.reset();
  });
}

function connect() {
  const source = new EventSource("eventos");
  source.addEventListener("open", () => { $("conexion").textContent = "en vivo"; $("conexion").className = "conexion vivo"; });
  source.addEventListener("error", () => { $("conexion").textContent = "reconectando…"; $("conexion").className = "conexion"; });
  source.addEventListener("estado", (ev) => render(JSON.parse(ev.data)));
  source.addEventListener("serie", (ev) => renderSeries(JSON.parse(ev.data)));
}

window.addEventListener("resize", () => {
  if (!charts) return;
  const width = Math.max(280, $("trafico").clientWidth - 32);
  for (const c of charts) c.setSize({ width, height: c.height });
});

document.addEventListener("DOMContentLoaded", () => { wire(); connect(); });
