// PREP Irimbo (demostración): polls json/main.json every 60 s and renders it.
// `?cada=N` polls every N seconds instead (drills and browser tests).
"use strict";
const every = Number(new URLSearchParams(location.search).get("cada"));
const REFRESH_MS = every >= 1 ? every * 1000 : 60000;
const fmt = new Intl.NumberFormat("es-MX");

async function getJSON(path) {
  const res = await fetch(path, { cache: "no-store" });
  if (!res.ok) throw new Error(path + ": " + res.status);
  return res.json();
}

function render(main) {
  const c = main.ultimoCorte;
  document.getElementById("corte").textContent = `${c.fecha} ${c.hora} h (${c.zona})`;
  document.getElementById("actas").textContent =
    `${main.actasContabilizadas} de ${main.actasEsperadas} (${main.porcentajeActas.toFixed(2)} %)`;
  document.getElementById("participacion").textContent = `${main.participacion.toFixed(2)} %`;
  document.getElementById("total").textContent = fmt.format(main.totalVotos);
  const body = document.querySelector("#partidos tbody");
  body.replaceChildren();
  const rows = [...main.partidos].sort((a, b) => b.votos - a.votos);
  for (const p of rows) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td><img src="img/${p.siglas.toLowerCase()}.svg" alt="" width="24" height="24"> ${p.siglas}</td>` +
      `<td>${fmt.format(p.votos)}</td><td>${p.porcentaje.toFixed(2)}</td>` +
      `<td><div class="barra" style="width:${p.porcentaje}%;background:#${p.color}"></div></td>`;
    body.appendChild(tr);
  }
  const select = document.getElementById("casilla");
  const chosen = select.value;
  select.replaceChildren(new Option("Elige una casilla…", ""));
  for (const k of main.casillas) select.appendChild(new Option(k, k, false, k === chosen));
}

async function showCasilla(key) {
  const box = document.getElementById("detalle");
  if (!key) { box.replaceChildren(); return; }
  const c = await getJSON(`json/casillas/${key}.json`);
  box.textContent = Object.entries(c.votos).map(([p, v]) => `${p}: ${fmt.format(v)}`).join(" · ");
}

async function refresh() {
  try {
    render(await getJSON("json/main.json"));
  } catch (err) {
    document.getElementById("corte").textContent = "sin conexión, reintentando…";
  }
}

document.getElementById("casilla").addEventListener("change", (e) => showCasilla(e.target.value));
refresh();
setInterval(refresh, REFRESH_MS);
