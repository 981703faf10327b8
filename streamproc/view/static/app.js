// streamproc explorer: a Leaflet map of datashader tiles, the clusters, and a query box.
// Map coordinates: tile 0/0/0 is the square [x0, x0 + span] x [y1 - span, y1] of the stored positions;
// Leaflet's CRS.Simple puts it at lng 0..256, lat -256..0.
"use strict";

const state = { info: null, clusters: [], color: "cluster", tiles: null, labels: L.layerGroup(), marks: L.layerGroup(),
                picked: L.layerGroup(), history: [], clusterPage: { label: null, offset: 0, outliers: false } };
const map = L.map("map", { crs: L.CRS.Simple, minZoom: 0, maxZoom: 18, zoomSnap: 1, attributionControl: false });
state.labels.addTo(map);
state.marks.addTo(map);
state.picked.addTo(map);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value); else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

function showError(message) { document.getElementById("error").textContent = message || ""; }

async function api(path, options) {
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function toLatLng(x, y) {
  const e = state.info.extent;
  return L.latLng(-(e.y1 - y) / e.span * 256, (x - e.x0) / e.span * 256);
}

function fromLatLng(latlng) {
  const e = state.info.extent;
  return [e.x0 + latlng.lng / 256 * e.span, e.y1 + latlng.lat / 256 * e.span];
}

function colorOf(label) {
  const index = state.info.classes.indexOf(label);
  const palette = state.info.colors.cluster;
  return palette && index >= 0 ? palette.colors[index] : "#888";
}

function tileUrl() {
  return `/api/tiles/{z}/{x}/{y}.png?color=${state.color}&v=${state.info.version}`;
}

async function loadInfo() {
  const info = await api("/api/info");
  const changed = !state.info || info.version !== state.info.version;
  state.info = info;
  document.getElementById("summary").textContent =
    `model ${info.model} · k = ${info.k} · ${info.rows.toLocaleString()} rows · ${info.projected.toLocaleString()} on the map`;
  document.getElementById("query").placeholder = info.texts
    ? "a text, or a vector as a JSON list: [0.1, -0.3, …]"
    : "a vector as a JSON list: [0.1, -0.3, …] (this model has no text encoder)";
  if (!info.extent) { showError("this model has no map yet: run streamproc project"); return; }
  if (!state.tiles) {
    const bounds = L.latLngBounds([[-255.999, 0.001], [-0.001, 255.999]]);
    state.tiles = L.tileLayer(tileUrl(), { tileSize: 256, noWrap: true, bounds, maxZoom: 18, maxNativeZoom: 18 });
    state.tiles.addTo(map);
    map.fitBounds(L.latLngBounds([[-256, 0], [0, 256]]));
  } else if (changed) {
    state.tiles.setUrl(tileUrl());
  }
  if (changed) {
    state.picked.clearLayers();  // a new model places its rows elsewhere
    await loadClusters();
  }
}

async function loadClusters() {
  const data = await api("/api/clusters");
  state.clusters = data.clusters;
  state.labels.clearLayers();
  const list = document.getElementById("cluster-list");
  list.replaceChildren();
  for (const c of data.clusters) {
    const words = (c.keywords || []).slice(0, 3).join(", ");
    list.append(el("span", { class: "chip", "data-label": c.label, onclick: () => showCluster(c.label, 0, false) },
      el("span", { class: "swatch", style: `background:${colorOf(c.label)}` }), `${c.label} (${c.size.toLocaleString()})`));
    if (c.x !== null && c.size > 0) {
      const icon = L.divIcon({ className: "cluster-label", html: "", iconSize: null });
      const marker = L.marker(toLatLng(c.x, c.y), { icon, interactive: true });
      marker.size = c.size;
      marker.on("add", () => {
        marker.getElement().replaceChildren(el("span", { class: "cluster-text" }, `${c.label}${words ? ": " + words : ""}`));
      });
      marker.on("click", () => showCluster(c.label, 0, false));
      state.labels.addLayer(marker);
    }
  }
  declutter();
}

function declutter() {
  // labels are centred on their cluster; where two would overlap, the larger cluster's is shown
  // (zooming in spreads them apart and shows the others)
  const kept = [];
  const markers = state.labels.getLayers().sort((a, b) => b.size - a.size);
  for (const marker of markers) {
    const text = marker.getElement() && marker.getElement().firstChild;
    if (!text) continue;
    text.style.visibility = "visible";
    const box = text.getBoundingClientRect();
    const hits = kept.some((k) => box.left < k.right && k.left < box.right && box.top < k.bottom && k.top < box.bottom);
    if (hits) text.style.visibility = "hidden"; else kept.push(box);
  }
}
map.on("zoomend", declutter);

function rowView(row) {
  const parts = [el("b", {}, `row ${row.row}`), row.id !== null ? ` · ${row.id}` : "",
    row.label !== null ? ` · cluster ${row.label}` : " · not labelled yet",
    row.outlier ? " · OUTLIER" : "", row.batch ? ` · ${row.batch}` : ""];
  const details = row.label !== null
    ? `distance ${row.distance.toPrecision(4)} · confidence ${row.confidence.toFixed(3)}` : "";
  const node = el("div", { class: "row" }, ...parts, el("div", { class: "muted" }, details));
  if (row.text !== null) node.append(el("div", {}, row.text));
  if (row.image) node.append(el("img", { src: row.image, alt: `image of row ${row.row}` }));
  return node;
}

async function showPoint(latlng) {
  const [x, y] = fromLatLng(latlng);
  const data = await api(`/api/near?x=${x}&y=${y}&n=5`);
  const pixels = 256 * 2 ** map.getZoom() / state.info.extent.span;
  const close = data.rows.filter((r) => r.map_distance * pixels <= 8);
  const box = document.getElementById("point");
  box.replaceChildren(...(close.length ? close.map(rowView) : [el("div", { class: "muted" }, "No point within 8 pixels here.")]));
  // a ring on the nearest of the rows shown, so the panel and the map point at the same place
  state.picked.clearLayers();
  if (close.length && close[0].x !== null) {
    state.picked.addLayer(L.circleMarker(toLatLng(close[0].x, close[0].y),
      { radius: 6, color: "#d00", weight: 2, fill: false, interactive: false, className: "picked-mark" }));
  }
}

async function showCluster(label, offset, outliers) {
  state.clusterPage = { label, offset, outliers };
  const c = state.clusters.find((item) => item.label === label);
  const page = await api(`/api/clusters/${label}/members?offset=${offset}&limit=10&outliers=${outliers ? 1 : 0}`);
  const reps = await Promise.all(c.representatives.map((r) => api(`/api/rows/${r}`)));
  const total = c.batches.reduce((sum, b) => sum + b.rows, 0) || 1;
  const box = document.getElementById("cluster");
  box.replaceChildren(
    el("h3", {}, el("span", { class: "swatch", style: `background:${colorOf(label)}` }), `cluster ${label}`),
    el("div", {}, `${c.size.toLocaleString()} rows · ${c.outliers.toLocaleString()} outliers · mean distance ${c.mean_distance.toPrecision(4)}`),
    el("div", {}, c.keywords ? `keywords: ${c.keywords.join(", ")}` : "no texts, so no keywords"),
    el("h4", {}, "share per batch"),
    ...c.batches.map((b) => bar(b.batch, b.rows / total, colorOf(label), `${b.rows.toLocaleString()}`)),
    el("h4", {}, "representatives (nearest the centroid)"), ...reps.map(rowView),
    el("h4", {}, outliers ? "outliers" : "members",
      el("button", { onclick: () => showCluster(label, Math.max(0, offset - 10), outliers) }, "◀"),
      el("button", { onclick: () => showCluster(label, offset + 10, outliers) }, "▶"),
      el("button", { onclick: () => showCluster(label, 0, !outliers) }, outliers ? "all members" : "outliers only")),
    el("div", { class: "muted" }, `from ${offset}`), ...page.rows.map(rowView));
}

function bar(name, share, color, text) {
  return el("div", { class: "bar" }, el("span", { class: "name" }, name),
    el("span", { class: "fill", style: `width:${Math.max(1, share * 200)}px;background:${color}` }), text);
}

function parseQuery(raw) {
  const text = raw.trim();
  if (text.startsWith("[")) {
    const value = JSON.parse(text);
    return { vectors: Array.isArray(value[0]) ? value : [value] };
  }
  return { texts: [text] };
}

function answerError(message) {
  // a failed query clears the previous answer and its marker, and says why beside the box
  document.getElementById("answer").replaceChildren(el("div", { class: "error" }, message));
  state.marks.clearLayers();
}

async function ask() {
  showError("");
  const raw = document.getElementById("query").value;
  let body;
  try { body = parseQuery(raw); } catch (err) { answerError(`not a JSON list: ${err.message}`); return; }
  if (body.texts && state.info && !state.info.texts) {
    answerError("this store's model has no text encoder: paste a vector as a JSON list"); return;
  }
  let data;
  try {
    data = await api("/api/predict", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  } catch (err) { answerError(err.message); return; }
  const p = data.predictions[0];
  const neighbours = await Promise.all(p.neighbours.map((r) => api(`/api/rows/${r}`)));
  const cluster = state.clusters.find((c) => c.label === p.label);
  const words = cluster && cluster.keywords ? ` (${cluster.keywords.slice(0, 3).join(", ")})` : "";
  const answer = document.getElementById("answer");
  answer.replaceChildren(
    el("div", { id: "answer-label" }, el("b", {}, `cluster ${p.label}${words}`),
      ` · confidence ${p.confidence.toFixed(3)} · distance ${p.distance.toPrecision(4)}${p.outlier ? " · OUTLIER" : ""}`),
    el("div", { class: "muted" }, "confidence is relative among the clusters; OUTLIER: farther from the centroid "
      + "than the cluster's own rows"),
    el("div", { id: "probabilities" }, ...data.classes.map((label, i) =>
      bar(`cluster ${label}`, p.probabilities[i], colorOf(label), p.probabilities[i].toFixed(3)))),
    el("h4", {}, "nearest stored rows on the map"), ...neighbours.map(rowView));
  state.marks.clearLayers();
  if (p.x !== null) {
    const where = toLatLng(p.x, p.y);
    state.marks.addLayer(L.circleMarker(where, { radius: 8, color: "#111", weight: 3, fill: false }));
    if (!map.getBounds().contains(where)) map.panTo(where);  // the answer's place is always in view
  }
  record(raw, data.predictions.length > 1 ? `${data.predictions.length} vectors` : null, data, p);
}

function record(raw, note, data, p) {
  state.history.push({ query: note || raw.trim().slice(0, 200), model: data.model, label: p.label, confidence: p.confidence,
                       outlier: p.outlier, x: p.x, y: p.y, probabilities: p.probabilities, classes: data.classes });
  const n = state.history.length;
  document.querySelector("#history tbody").prepend(el("tr", {}, el("td", {}, n), el("td", {}, state.history[n - 1].query.slice(0, 40)),
    el("td", {}, p.label), el("td", {}, p.confidence.toFixed(3)), el("td", {}, p.outlier ? "yes" : "")));
  const quote = (v) => `"${String(v).replaceAll('"', '""')}"`;
  const csv = ["query,model,label,confidence,outlier,x,y," + data.classes.map((c) => `p_${c}`).join(",")]
    .concat(state.history.map((h) => [quote(h.query), h.model, h.label, h.confidence, h.outlier, h.x, h.y, ...h.probabilities].join(",")));
  link("csv", new Blob([csv.join("\n") + "\n"], { type: "text/csv" }));
  link("json", new Blob([JSON.stringify(state.history, null, 1)], { type: "application/json" }));
}

function link(id, blob) {
  const anchor = document.getElementById(id);
  if (anchor.href.startsWith("blob:")) URL.revokeObjectURL(anchor.href);
  anchor.href = URL.createObjectURL(blob);
}

document.getElementById("ask").addEventListener("click", ask);
document.getElementById("color").addEventListener("change", (event) => {
  state.color = event.target.value;
  if (state.tiles) state.tiles.setUrl(tileUrl());
});
map.on("click", (event) => { if (state.info && state.info.extent) showPoint(event.latlng).catch((err) => showError(err.message)); });
loadInfo().catch((err) => showError(err.message));
setInterval(() => loadInfo().catch((err) => showError(err.message)), 15000);
