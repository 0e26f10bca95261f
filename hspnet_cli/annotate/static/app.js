// hspnet annotate page. Labels and paths are only ever put into the page as text
// (textContent), never as HTML. Answers are sent in order; the next image is already
// loaded, so it is shown before the server has even been told about the answer.
"use strict";

const token = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
const clientId = sessionStorage.getItem("hspnet-client") || (() => {
  const bytes = new Uint8Array(12); crypto.getRandomValues(bytes);
  const id = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  sessionStorage.setItem("hspnet-client", id); return id;
})();

const state = {
  config: null, current: null, queue: [], shownAt: 0, history: [], answered: new Set(),
  chain: Promise.resolve(), pending: 0, recent: [], choices: [], matches: [], done: false,
};
window.hspnetTimings = [];  // ms from an answer to the next image painted (benchmarks read it)
window.hspnetSaves = [];    // ms from an answer to the server's acknowledgement (written + fsync'ed)

function api(path, body) {
  const opts = { headers: { "X-HSPNet-Token": token } };
  if (body !== undefined) {
    opts.method = "POST"; opts.body = JSON.stringify({ client: clientId, ...body });
    opts.headers["Content-Type"] = "application/json";
  }
  return fetch(path, opts).then(async (r) => {
    const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
    if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
    return data;
  });
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function say(text, bad) { const m = $("message"); m.textContent = text; m.className = bad ? "bad" : ""; }
function annotator() { return $("annotator").value.trim() || state.config.annotator; }
function imageUrl(item) { return `${item.src}?token=${encodeURIComponent(token)}`; }
function setPending(delta) { state.pending += delta; document.body.dataset.pending = String(state.pending); }

// The number keys keep the labels used last, across reloads and restarts of the server.
function recentKey() { return `hspnet-recent-${state.config.taxonomy}`; }
function loadRecent() {
  try {
    const known = new Set(state.config.labels);
    const saved = JSON.parse(localStorage.getItem(recentKey()) || "[]");
    state.recent = Array.isArray(saved) ? saved.filter((l) => known.has(l)).slice(0, 9) : [];
  } catch (e) { state.recent = []; }
}

function preload(items) {
  for (const item of items) { if (!item.preloaded && !item.error) { item.preloaded = new Image(); item.preloaded.src = imageUrl(item); } }
}

function renderChoices(item) {
  const box = $("choices"); box.replaceChildren();
  const suggested = item && item.suggestions.length > 0;
  $("choices-title").textContent = suggested ? "Suggestions" : "Recently used";
  $("suggester").textContent = suggested ? state.config.suggester : "";
  $("suggester").title = suggested ? state.config.suggester : "";
  state.choices = suggested ? item.suggestions.map((s) => ({ label: s.label, group: s.group, score: s.score, rank: s.rank }))
    : state.recent.map((label) => ({ label, group: groupOf[label] }));
  state.choices.slice(0, 9).forEach((choice, i) => {
    const button = el("button", "choice"); button.type = "button";
    button.append(el("kbd", "", String(i + 1)), el("span", "name", choice.label), el("span", "group", choice.group));
    if (choice.score !== undefined) { const bar = el("span", "score"); bar.style.width = `${Math.round(choice.score * 100)}%`; button.append(bar); }
    button.addEventListener("click", () => answer("answer", choice.label));
    box.append(button);
  });
  if (!state.choices.length) box.append(el("p", "muted", "Pick a label below or search; the labels you use get keys 1-9."));
}

const groupOf = {};
function renderGroups() {
  const box = $("groups"); box.replaceChildren();
  for (const group of state.config.groups) {
    const section = el("div", "group-box"); section.append(el("h3", "", group.name));
    const chips = el("div", "chips");
    for (const label of group.labels) {
      groupOf[label] = group.name;
      const chip = el("button", "chip", label); chip.type = "button"; chip.dataset.label = label;
      chip.addEventListener("click", () => answer("answer", label));
      chips.append(chip);
    }
    section.append(chips); box.append(section);
  }
}

function searchLabels(query) {
  const q = query.trim().toLowerCase();
  if (!q) return [];
  const scored = [];
  for (const label of state.config.labels) {
    const name = label.toLowerCase(), group = groupOf[label].toLowerCase();
    const score = name.startsWith(q) ? 0 : name.includes(q) ? 1 : group.startsWith(q) ? 2 : group.includes(q) ? 3 : -1;
    if (score >= 0) scored.push([score, label]);
  }
  scored.sort((a, b) => a[0] - b[0] || a[1].localeCompare(b[1]));
  return scored.slice(0, 8).map((s) => s[1]);
}

function renderMatches() {
  state.matches = searchLabels($("search").value);
  const box = $("matches"); box.replaceChildren();
  for (const label of state.matches) {
    const button = el("button", "match"); button.type = "button";
    button.append(el("span", "", label), el("span", "group", groupOf[label]));
    button.addEventListener("click", () => answer("answer", label));
    box.append(button);
  }
}

function show(item, startedAt) {
  state.current = item;
  const picture = $("picture");
  document.body.dataset.state = "loading";
  $("image-name").textContent = item ? item.image : "";
  renderChoices(item);
  if (!item) { picture.removeAttribute("src"); return; }
  $("picture-error").hidden = !item.error;
  picture.hidden = !!item.error;
  if (item.error) {
    $("picture-error").textContent = `Cannot show ${item.image}: ${item.error}. Skip it (S).`;
    ready(item, startedAt);
    return;
  }
  picture.src = imageUrl(item);
  picture.decode().catch(() => {}).then(() => {
    if (state.current !== item) return;
    picture.classList.toggle("small", picture.naturalWidth < 400);
    requestAnimationFrame(() => ready(item, startedAt));
  });
}

function ready(item, startedAt) {
  state.shownAt = performance.now();
  document.body.dataset.image = item.image;
  document.body.dataset.state = "ready";
  if (startedAt !== undefined) window.hspnetTimings.push({ image: item.image, ms: state.shownAt - startedAt });
}

function advance(startedAt) {
  const next = state.queue.shift();
  if (next) { show(next, startedAt); preload(state.queue); }
  else { state.current = null; document.body.dataset.state = "waiting"; $("picture").removeAttribute("src"); }
  refill();
}

let refilling = null;
function refill() {
  if (refilling) return refilling;
  const want = state.config.prefetch + 1;
  refilling = state.chain.then(() => api("/api/next", { want })).then((data) => {
    const held = new Set(state.queue.map((i) => i.image));
    if (state.current) held.add(state.current.image);
    for (const item of data.items) {
      if (!held.has(item.image) && !state.answered.has(item.image)) { state.queue.push(item); held.add(item.image); }
    }
    preload(state.queue);
    if (!state.current) {
      if (state.queue.length) show(state.queue.shift());
      else finished(data.remaining);
    }
  }).catch((e) => say(`could not fetch images: ${e.message}`, true)).finally(() => { refilling = null; });
  return refilling;
}

function finished(remaining) {
  state.done = true; document.body.dataset.state = "done";
  $("done-text").textContent = remaining > 0
    ? `${remaining} image(s) are open in other tabs; this page looks again in a few seconds.`
    : "Nothing left to label in this folder. You can close the page; labels are saved.";
  $("done").hidden = false;
  if (remaining > 0) setTimeout(() => { $("done").hidden = true; state.done = false; refill(); }, 5000);
}

function answer(kind, label) {
  const item = state.current;
  if (!item || document.body.dataset.state !== "ready") return;
  const startedAt = performance.now();
  const seconds = (startedAt - state.shownAt) / 1000;
  state.answered.add(item.image);
  if (kind === "answer") {
    state.recent = [label, ...state.recent.filter((l) => l !== label)].slice(0, 9);
    localStorage.setItem(recentKey(), JSON.stringify(state.recent));
  }
  $("search").value = ""; renderMatches();
  if (document.activeElement instanceof HTMLElement) document.activeElement.blur();  // keys go to the page again
  $("groups").scrollTop = 0;
  setPending(+1);
  state.chain = state.chain.then(() => api("/api/answer", { image: item.image, kind, label, seconds, annotator: annotator() }))
    .then((data) => {
      window.hspnetSaves.push(performance.now() - startedAt);
      state.history.push({ seq: data.seq, item });
      say(kind === "answer" ? `saved: ${label}` : kind === "none" ? "saved: no label fits" : "skipped");
      refreshStatus();
    })
    .catch((e) => { state.answered.delete(item.image); say(`not saved (${item.image}): ${e.message}`, true); })
    .finally(() => setPending(-1));
  advance(startedAt);
}

function undo() {
  if (document.body.dataset.state === "loading") return;
  state.chain = state.chain.then(() => {
    const last = state.history.pop();
    if (!last) { say("nothing to undo in this tab", true); return; }
    return api("/api/undo", { seq: last.seq, annotator: annotator() }).then((data) => {
      state.answered.delete(data.item.image);
      if (state.current) state.queue.unshift(state.current);
      $("done").hidden = true; state.done = false;
      show(data.item);
      say(`undone: ${data.item.image}`);
      refreshStatus();
    }).catch((e) => say(`undo failed: ${e.message}`, true));
  });
}

let statusBusy = false;
function refreshStatus() {
  if (statusBusy) return; statusBusy = true;
  api("/api/status").then((s) => {
    $("progress-fill").style.width = `${(100 * s.queue_done / Math.max(1, s.total)).toFixed(2)}%`;
    $("counts").replaceChildren(el("b", "", s.queue_done.toLocaleString()), ` / ${s.total.toLocaleString()} done`);
    $("median").replaceChildren(el("b", "", s.median_seconds === null ? "–" : `${s.median_seconds} s`), " median per image");
    const summary = $("status-summary"); summary.replaceChildren();
    const facts = [["this queue", `${s.queue_done} of ${s.total} done`], ["labelled in the log", s.labelled],
      ["one label", s.answered], ["no label fits", s.none_fits], ["skipped", s.skipped], ["open in tabs now", s.in_progress], ["median seconds per image", s.median_seconds ?? "–"],
      ["suggestion #1 taken", s.suggestion_top1 === null ? "–" : `${Math.round(100 * s.suggestion_top1)}%`],
      ["annotators", Object.entries(s.annotators).map(([k, v]) => `${k} (${v})`).join(", ") || "–"]];
    for (const [k, v] of facts) { const p = el("div", "", `${k}: `); p.append(el("b", "", String(v))); summary.append(p); }
    const body = document.querySelector("#status-labels tbody"); body.replaceChildren();
    for (const [label, n] of Object.entries(s.labels_used)) {
      const row = el("tr"); row.append(el("td", "", label), el("td", "", String(n))); body.append(row);
    }
  }).catch(() => {}).finally(() => { statusBusy = false; });
}

function toggleStatus(open) {
  const view = $("status-view");
  view.hidden = open === undefined ? !view.hidden : !open;
  if (!view.hidden) refreshStatus();
}

document.addEventListener("keydown", (event) => {
  const search = $("search");
  if (event.target === search) {
    if (event.key === "Enter") { event.preventDefault(); if (state.matches.length) answer("answer", state.matches[0]); }
    else if (event.key === "Escape") { search.value = ""; renderMatches(); search.blur(); }
    return;
  }
  if (event.target instanceof HTMLInputElement || event.ctrlKey && event.key !== "z" || event.metaKey || event.altKey) return;
  const key = event.key.toLowerCase();
  if (/^[1-9]$/.test(key)) { const c = state.choices[Number(key) - 1]; if (c) answer("answer", c.label); }
  else if (key === "n" || key === "0") answer("none");
  else if (key === "s" || key === " ") answer("skip");
  else if (key === "u" || (event.ctrlKey && key === "z")) undo();
  else if (key === "/") search.focus();
  else if (key === "?") toggleStatus();
  else if (key === "escape") toggleStatus(false);
  else return;
  event.preventDefault();
});

async function start() {
  state.config = await api("/api/config");
  $("taxonomy").textContent = `${state.config.taxonomy} · ${state.config.labels.length} labels`;
  const saved = localStorage.getItem("hspnet-annotator");
  $("annotator").value = saved || state.config.annotator;
  $("annotator").addEventListener("change", () => localStorage.setItem("hspnet-annotator", $("annotator").value.trim()));
  $("search").addEventListener("input", renderMatches);
  $("none").addEventListener("click", () => answer("none"));
  $("skip").addEventListener("click", () => answer("skip"));
  $("undo").addEventListener("click", undo);
  $("status-toggle").addEventListener("click", () => toggleStatus());
  $("status-view").addEventListener("click", (e) => { if (e.target === $("status-view")) toggleStatus(false); });
  renderGroups();
  loadRecent();
  setPending(0);
  refreshStatus();
  setInterval(refreshStatus, 10000);
  // Leases are renewed while the tab is open and given back when it closes.
  setInterval(() => { if (!state.done) refill(); }, 60000);
  window.addEventListener("pagehide", () => {
    navigator.sendBeacon(`/api/release?token=${encodeURIComponent(token)}`,
      new Blob([JSON.stringify({ client: clientId })], { type: "application/json" }));
  });
  await refill();
}

start().catch((e) => say(`cannot start: ${e.message}`, true));
