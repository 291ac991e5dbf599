// pvad operator dashboard: log in, one SSE stream for this tab, camera tiles, alarm list with acknowledgement.
import { ScoreChart } from "./chart.js";

const $ = (sel, root = document) => root.querySelector(sel);
// What the page measured, for `pvad bench web` and the browser tests.
const stats = (window.pvad = { delays: [], alarmSeenAt: {}, ackSeenAt: {}, opens: 0, errors: 0, tilesAt: null });

let me = null;
let source = null;
let lastAlarmId = 0;
const tiles = new Map(); // camera -> {el, chart, live, lastSeen (ms), offlineAfter (ms)}
const alarms = new Map(); // event id -> alarm

async function api(path, options = {}) {
  const init = { credentials: "same-origin", ...options };
  if (options.json !== undefined) {
    init.method = init.method || "POST";
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(options.json);
  }
  const r = await fetch(path, init);
  if (r.status === 401 && path !== "/api/login") {
    showLogin();
    throw new Error("logged out");
  }
  return r;
}

const fmtTime = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });

function showLogin(message = "") {
  if (source) { source.close(); source = null; }
  me = null;
  $("#dash").hidden = true;
  $("#logout").hidden = true;
  $("#who").textContent = "";
  $("#login").hidden = false;
  $("#login-error").textContent = message;
  setConn("idle", "not connected");
}

function setConn(state, text) {
  const c = $("#conn");
  c.dataset.state = state;
  c.textContent = text;
}

// ---- camera tiles ----
function tile(camera) {
  let t = tiles.get(camera);
  if (t) return t;
  const el = document.createElement("article");
  el.className = "tile";
  el.dataset.camera = camera;
  el.dataset.state = "offline";
  el.innerHTML = `<header><h3></h3><span class="state">offline</span><span class="score">–</span></header>
    <div class="chart"></div>
    <dl class="stats">
      <div><dt>frames</dt><dd class="frames">0</dd></div>
      <div><dt>fps</dt><dd class="fps">0</dd></div>
      <div><dt>drops</dt><dd class="drops">0</dd></div>
      <div><dt>last frame</dt><dd class="age">–</dd></div>
      <div><dt>anonymizer</dt><dd class="anonymizer">–</dd></div>
      <div><dt>σ</dt><dd class="sigma">–</dd></div>
    </dl>`;
  $("h3", el).textContent = camera;
  if (me.may_view) {
    const live = document.createElement("div");
    live.className = "live";
    live.innerHTML = `<button type="button" class="view">Live view</button>`;
    el.append(live);
    $(".view", live).addEventListener("click", () => toggleLive(camera));
  }
  const list = $("#tiles");
  const after = [...list.children].find((c) => c.dataset.camera > camera);
  list.insertBefore(el, after || null);
  t = { el, chart: new ScoreChart($(".chart", el)), live: null, lastSeen: null, offlineAfter: 3000, offTimer: null };
  tiles.set(camera, t);
  return t;
}

function applyState(s) {
  const t = tile(s.camera);
  const el = t.el;
  t.offlineAfter = s.offline_after_s * 1000;
  if (s.state === "offline") t.lastSeen = null;
  else if (s.age_s !== null) t.lastSeen = Math.max(t.lastSeen || 0, Date.now() - s.age_s * 1000);
  armOffline(t);
  el.dataset.state = s.state;
  el.dataset.alarm = String(s.alarm && s.state !== "offline");
  $(".state", el).textContent = s.state;
  $(".frames", el).textContent = s.frames;
  $(".fps", el).textContent = s.fps.toFixed(1);
  $(".drops", el).textContent = s.refused ? `${s.drops} (+${s.refused} refused)` : s.drops;
  $(".age", el).textContent = s.age_s === null ? "never" : `${s.age_s.toFixed(1)} s ago`;
  $(".anonymizer", el).textContent = s.anonymizer || "–";
}

function applyScore(d) {
  stats.delays.push(Date.now() - d.t);
  if (stats.delays.length > 20000) stats.delays.splice(0, 10000);
  const t = tile(d.camera);
  const el = t.el;
  t.lastSeen = Math.max(t.lastSeen || 0, Date.now() - (d.age_ms || 0));
  armOffline(t);
  if (d.frames !== null) $(".frames", el).textContent = d.frames;
  $(".score", el).textContent = `s ${d.score.toFixed(2)}`;
  $(".sigma", el).textContent = d.sigma.toFixed(2);
  el.dataset.alarm = String(d.score >= 0.5);
  const state = d.phase || (el.dataset.state === "offline" ? "scoring" : el.dataset.state);
  el.dataset.state = state;
  $(".state", el).textContent = state;
  t.chart.push(d.t, d.sigma, d.score);
}

// A camera that stops sending shows offline here when its time is up (twice its frame interval + 1 s after
// its last frame reached the server), not at the next state event.
function armOffline(t) {
  clearTimeout(t.offTimer);
  if (t.lastSeen === null) return;
  t.offTimer = setTimeout(() => {
    if (t.lastSeen === null || Date.now() - t.lastSeen < t.offlineAfter) return armOffline(t);
    t.el.dataset.state = "offline";
    t.el.dataset.alarm = "false";
    $(".state", t.el).textContent = "offline";
    $(".fps", t.el).textContent = "0.0";
    t.lastSeen = null;
  }, Math.max(0, t.lastSeen + t.offlineAfter - Date.now()) + 1);
}

// ---- live view (operators): a polled image, never a stream; the server refuses raw cameras ----
function toggleLive(camera) {
  const t = tiles.get(camera);
  const box = $(".live", t.el);
  if (t.live) {
    clearTimeout(t.live.timer);
    t.live.img.remove();
    t.live.why.remove();
    if (t.live.url) URL.revokeObjectURL(t.live.url);
    t.live = null;
    $(".view", box).textContent = "Live view";
    return;
  }
  const img = document.createElement("img");
  img.alt = `what the server sees of ${camera}`;
  img.draggable = false;
  img.addEventListener("contextmenu", (e) => e.preventDefault());
  const why = document.createElement("p");
  why.className = "why";
  box.append(img, why);
  t.live = { img, why, url: null, timer: null };
  $(".view", box).textContent = "Close live view";
  const poll = async () => {
    if (t.live === null) return;
    try {
      const r = await api(`/api/cameras/${encodeURIComponent(camera)}/view.jpg`, { cache: "no-store" });
      if (t.live === null) return;
      if (r.ok) {
        const url = URL.createObjectURL(await r.blob());
        if (t.live.url) URL.revokeObjectURL(t.live.url);
        t.live.url = url;
        img.src = url;
        img.hidden = false;
        why.textContent = "";
      } else {
        img.hidden = true;
        why.textContent = (await r.json()).detail || `HTTP ${r.status}`;
        if (r.status === 403) return; // refused for good: stop polling
      }
    } catch (e) { /* network hiccup: try again */ }
    if (t.live) t.live.timer = setTimeout(poll, me.view_interval_ms);
  };
  poll();
}

// ---- alarms ----
function renderAlarm(a) {
  let li = $(`#alarms li[data-id="${a.id}"]`);
  if (!li) {
    li = document.createElement("li");
    li.className = "alarm";
    li.dataset.id = a.id;
    const list = $("#alarms");
    const after = [...list.children].find((c) => Number(c.dataset.id) < a.id);
    list.insertBefore(li, after || null);
  }
  li.dataset.kind = a.kind;
  li.dataset.camera = a.camera;
  li.dataset.acked = String(!!a.ack);
  li.innerHTML = `<div class="head"><b></b><span class="kind"></span><span class="when"></span><span class="s"></span></div>`;
  $("b", li).textContent = a.camera;
  $(".kind", li).textContent = a.kind === "raised" ? "alarm raised" : "alarm cleared";
  $(".when", li).textContent = fmtTime(a.t);
  $(".s", li).textContent = `s ${a.score.toFixed(2)} · #${a.id}`;
  if (a.ack) {
    const p = document.createElement("div");
    p.className = "acked";
    p.textContent = `acked by ${a.ack.user} at ${fmtTime(a.ack.t)}${a.ack.note ? ": " + a.ack.note : ""}`;
    li.append(p);
  } else if (a.kind === "raised" && me.may_ack) {
    const f = document.createElement("form");
    f.innerHTML = `<input name="note" maxlength="500" placeholder="note" aria-label="note"><button class="ack primary">Acknowledge</button>`;
    f.addEventListener("submit", async (e) => {
      e.preventDefault();
      $("button", f).disabled = true;
      const r = await api(`/api/alarms/${a.id}/ack`, { json: { note: f.note.value } });
      const body = await r.json();
      if (r.ok || r.status === 409) onAck(body.ack);
      else { $("button", f).disabled = false; alert(body.detail || `HTTP ${r.status}`); }
    });
    li.append(f);
  }
  $("#alarm-count").textContent = `(${alarms.size})`;
}

function onAlarm(a) {
  lastAlarmId = Math.max(lastAlarmId, a.id);
  const known = alarms.get(a.id);
  if (!(a.id in stats.alarmSeenAt)) stats.alarmSeenAt[a.id] = Date.now();
  if (known && known.ack && !a.ack) a.ack = known.ack;
  alarms.set(a.id, a);
  renderAlarm(a);
}

function onAck(ack) {
  if (!(ack.event_id in stats.ackSeenAt)) stats.ackSeenAt[ack.event_id] = Date.now();
  const a = alarms.get(ack.event_id);
  if (!a) return;
  a.ack = ack;
  renderAlarm(a);
}

async function loadAlarms() {
  const r = await api("/api/alarms?limit=200");
  const body = await r.json();
  for (const a of body.alarms) onAlarm(a);
  return body.last_id;
}

// ---- the event stream ----
function connect(after) {
  if (source) source.close();
  source = new EventSource(`/api/stream?after=${after}`);
  let wasDown = false;
  source.addEventListener("open", async () => {
    stats.opens++;
    setConn("live", "live");
    if (wasDown) await loadAlarms().catch(() => {}); // acks made while this tab was away
    wasDown = false;
  });
  source.addEventListener("error", async () => {
    stats.errors++;
    wasDown = true;
    setConn("reconnecting", "reconnecting…");
    if (source.readyState === EventSource.CLOSED) { // refused for good (e.g. logged out): check, then retry
      try {
        await api("/api/me");
        setTimeout(() => connect(lastAlarmId), 1000);
      } catch (e) { /* showLogin ran */ }
    }
  });
  source.addEventListener("state", (e) => {
    const d = JSON.parse(e.data);
    for (const s of d.cameras) applyState(s);
    if (stats.tilesAt === null && d.cameras.length) stats.tilesAt = performance.now();
  });
  source.addEventListener("score", (e) => applyScore(JSON.parse(e.data)));
  source.addEventListener("alarm", (e) => onAlarm(JSON.parse(e.data)));
  source.addEventListener("ack", (e) => onAck(JSON.parse(e.data)));
}

async function start() {
  $("#login").hidden = true;
  $("#dash").hidden = false;
  $("#logout").hidden = false;
  $("#who").textContent = `${me.user} (${me.role})`;
  const cams = await (await api("/api/cameras")).json();
  for (const s of cams.cameras) applyState(s);
  if (cams.cameras.length) stats.tilesAt = performance.now();
  connect(await loadAlarms());
}

async function boot() {
  $("#login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target;
    const r = await api("/api/login", { json: { user: f.user.value, password: f.password.value } });
    if (!r.ok) { $("#login-error").textContent = "Unknown user or wrong password."; return; }
    f.password.value = "";
    me = await (await api("/api/me")).json();
    start();
  });
  $("#logout").addEventListener("click", async () => {
    await api("/api/logout", { json: {} });
    location.reload();
  });
  const r = await fetch("/api/me", { credentials: "same-origin" });
  if (r.ok) { me = await r.json(); start(); } else showLogin();
}

boot();
