// The notipipe dashboard: one EventSource on /events, drawn by hand (no libraries, no network).
// `window.notipipe` holds what the page has received, for people and for the browser test.
"use strict";

const LATEST_ROWS = 20;
const CHART_SECONDS = 120;
const LAG_BUCKETS = 60000; // lag histogram in milliseconds; the last bucket takes the rest

const state = (window.notipipe = {
  total: 0,
  kinds: {},
  priorities: {},
  snapshotUpto: null, // the id the first snapshot counted up to
  lastId: null, // the last alert id received (what a reconnect resumes from)
  ranges: [], // every id received after the snapshot, as merged [first, last] runs
  duplicates: 0, // ids received twice
  gaps: [], // ids skipped between two events
  received: 0, // alerts received in events (not counted by a snapshot)
  events: 0,
  connects: 0, // streams opened (the first, then each reconnect)
  lagHistogram: new Uint32Array(LAG_BUCKETS), // creation to arrival, per alert
  serverLagHistogram: new Uint32Array(LAG_BUCKETS), // the server's read to arrival, per alert
  receivedPerSecond: new Map(), // alerts received per second of arrival time
  perSecond: new Map(), // alerts per second of their creation time
  arrivals: [], // [receive time in ms, alerts] of the last few seconds
  latest: [], // newest first
  reconnect: null,
  lagPercentile: null,
});

function addCounts(target, counts) {
  for (const [key, n] of Object.entries(counts)) target[key] = (target[key] || 0) + n;
}

function noteIds(ranges) {
  for (const [first, last] of ranges) {
    let from = first;
    if (state.lastId !== null && first <= state.lastId) {
      state.duplicates += Math.min(last, state.lastId) - first + 1;
      from = state.lastId + 1;
      if (from > last) continue;
    } else if (state.lastId !== null && first > state.lastId + 1) {
      state.gaps.push([state.lastId + 1, first - 1]);
    }
    const tail = state.ranges[state.ranges.length - 1];
    if (tail && tail[1] + 1 === from) tail[1] = last;
    else state.ranges.push([from, last]);
    state.lastId = last;
  }
}

function onSnapshot(event) {
  const data = JSON.parse(event.data);
  state.kinds = data.kinds;
  state.priorities = data.priorities;
  state.total = Object.values(data.kinds).reduce((a, b) => a + b, 0);
  if (state.snapshotUpto === null) state.snapshotUpto = data.upto;
  state.lastId = data.upto;
  state.latest = data.latest.slice().reverse();
  // The chart's past: the stored alerts per second of their creation, up to the snapshot.
  state.perSecond = new Map(data.seconds);
  dirty = true;
  // Drawn before the page says it is live: "live" never shows beside totals not yet received.
  draw();
  setStatus("live", "live");
}

function onAlerts(event) {
  const data = JSON.parse(event.data);
  const now = Date.now();
  let n = 0;
  for (const [first, last] of data.ids) n += last - first + 1;
  noteIds(data.ids);
  addCounts(state.kinds, data.kinds);
  addCounts(state.priorities, data.priorities);
  state.total += n;
  state.received += n;
  state.events += 1;
  const fromServer = Math.min(LAG_BUCKETS - 1, Math.max(0, now - data.sent));
  state.serverLagHistogram[fromServer] += n;
  const arrival = Math.floor(now / 1000);
  state.receivedPerSecond.set(arrival, (state.receivedPerSecond.get(arrival) || 0) + n);
  for (const offset of data.at) {
    const created = data.t0 + offset;
    const lag = Math.min(LAG_BUCKETS - 1, Math.max(0, now - created));
    state.lagHistogram[lag] += 1;
    const second = Math.floor(created / 1000);
    state.perSecond.set(second, (state.perSecond.get(second) || 0) + 1);
  }
  state.arrivals.push([now, n]);
  state.latest = data.latest.slice().reverse().concat(state.latest).slice(0, LATEST_ROWS);
  dirty = true;
}

state.lagPercentile = function (p, histogram = state.lagHistogram) {
  let total = 0;
  for (const n of histogram) total += n;
  if (total === 0) return null;
  let seen = 0;
  for (let ms = 0; ms < LAG_BUCKETS; ms++) {
    seen += histogram[ms];
    if (seen >= total * p) return ms;
  }
  return LAG_BUCKETS - 1;
};

// The token this page was opened with (notipipe serve beyond loopback), passed on to the stream.
const TOKEN = new URLSearchParams(window.location.search).get("token");

function eventsUrl() {
  // A browser's own reconnect sends Last-Event-ID; a stream we open anew says where it was.
  const query = new URLSearchParams();
  if (state.lastId !== null) query.set("after", state.lastId);
  if (TOKEN !== null) query.set("token", TOKEN);
  const text = query.toString();
  return text ? "events?" + text : "events";
}

let source = null;
function connect() {
  source = new EventSource(eventsUrl());
  source.addEventListener("open", () => {
    state.connects += 1;
    // A first stream is live once its snapshot is shown; a resumed one, at once.
    if (state.snapshotUpto === null) setStatus("", "loading");
    else setStatus("live", "live");
  });
  source.addEventListener("snapshot", onSnapshot);
  source.addEventListener("alerts", onAlerts);
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      setStatus("down", "disconnected");
      setTimeout(connect, 1000);
    } else {
      setStatus("down", "reconnecting");
    }
  });
}
state.reconnect = function () {
  source.close();
  connect();
};

function setStatus(kind, text) {
  const el = document.getElementById("status");
  el.className = "pill " + kind;
  el.textContent = text;
}

// -- drawing ---------------------------------------------------------------------------------

let dirty = true;
const fmt = new Intl.NumberFormat("en");

// The step between the chart's value labels: the round number (1, 2 or 5 times a power of ten)
// that splits 0..most into at most AXIS_STEPS parts.
const AXIS_STEPS = 5;
function axisStep(most) {
  const rough = Math.max(1, most / AXIS_STEPS);
  const power = 10 ** Math.floor(Math.log10(rough));
  for (const m of [1, 2, 5, 10]) if (m * power >= rough) return m * power;
  return 10 * power;
}

// 2500 -> "2.5k", 1500000 -> "1.5M": an axis label short enough for the margin.
function compact(n) {
  for (const [size, unit] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
    if (n >= size) return Number((n / size).toFixed(2)) + unit;
  }
  return String(n);
}

function bars(el, counts, colour) {
  const entries = Object.entries(counts).sort();
  const most = Math.max(1, ...entries.map(([, n]) => n));
  el.replaceChildren(
    ...entries.map(([key, n]) => {
      const row = document.createElement("div");
      row.className = "bar";
      const label = document.createElement("span");
      label.textContent = key;
      const track = document.createElement("div");
      track.className = "track";
      const fill = document.createElement("div");
      fill.className = "fill";
      fill.style.width = ((100 * n) / most).toFixed(1) + "%";
      fill.style.background = colour(key);
      track.append(fill);
      const count = document.createElement("span");
      count.className = "n";
      count.textContent = fmt.format(n);
      row.append(label, track, count);
      return row;
    }),
  );
}

// The built-in kinds' colours; any other kind (a registered one, or one this server's process
// has not registered) is drawn in a neutral grey, whatever its name.
const KIND_COLOURS = { email: "var(--email)", sms: "var(--sms)" };
const NEUTRAL = "#9aa5b1";
function kindColour(kind) {
  return Object.hasOwn(KIND_COLOURS, kind) ? KIND_COLOURS[kind] : NEUTRAL;
}
// The kind cell's class (its colour is kindColour's): a stored kind's name never becomes
// class names of its own.
function kindClass(kind) {
  return Object.hasOwn(KIND_COLOURS, kind) ? "kind-" + kind : "kind-other";
}
function priorityColour(p) {
  return ["#5b8def", "#4aa3ff", "#9aa5b1", "#f5a524", "#e5484d"][Number(p) - 1] || "#9aa5b1";
}

function table() {
  const body = document.getElementById("latest");
  body.replaceChildren(
    ...state.latest.map((a) => {
      const tr = document.createElement("tr");
      tr.dataset.id = a.id;
      const cells = [
        [a.id, "num"],
        [new Date(a.at * 1000).toLocaleTimeString(), ""],
        [a.kind, kindClass(a.kind)],
        [a.priority, "num"],
        [a.to, ""],
        [a.text, ""],
      ];
      for (const [text, cls] of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        if (cls) td.className = cls;
        tr.append(td);
      }
      tr.children[2].style.color = kindColour(a.kind);
      return tr;
    }),
  );
}

function chart() {
  const canvas = document.getElementById("chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  if (canvas.width !== width * ratio) { canvas.width = width * ratio; canvas.height = height * ratio; }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const end = Math.floor(Date.now() / 1000);
  const values = [];
  for (let s = end - CHART_SECONDS + 1; s <= end; s++) values.push(state.perSecond.get(s) || 0);
  for (const s of state.perSecond.keys()) if (s < end - CHART_SECONDS) state.perSecond.delete(s);
  const highest = Math.max(AXIS_STEPS, ...values); // a quiet chart still has a scale
  const step = axisStep(highest);
  const most = step * Math.ceil(highest / step);
  const left = 48, bottom = height - 20, top = 10, w = width - left - 8;
  g.strokeStyle = "#2a3540";
  g.fillStyle = "#8a96a3";
  g.font = "11px system-ui, sans-serif";
  g.textAlign = "right";
  for (let v = 0; v <= most; v += step) {
    const y = bottom - ((bottom - top) * v) / most;
    g.beginPath(); g.moveTo(left, y); g.lineTo(left + w, y); g.stroke();
    g.fillText(compact(v), left - 6, y + 4);
  }
  // The time axis: a mark every 30 s back from now.
  g.textAlign = "center";
  for (let back = CHART_SECONDS; back >= 0; back -= 30) {
    const x = left + (w * (CHART_SECONDS - back)) / CHART_SECONDS;
    g.beginPath(); g.moveTo(x, bottom); g.lineTo(x, bottom + 4); g.stroke();
    g.textAlign = back === CHART_SECONDS ? "left" : back === 0 ? "right" : "center";
    g.fillText(back === 0 ? "now" : "-" + back + " s", x, height - 4);
  }
  g.strokeStyle = "#4aa3ff";
  g.lineWidth = 2;
  g.beginPath();
  values.forEach((v, i) => {
    const x = left + (w * i) / (values.length - 1);
    const y = bottom - ((bottom - top) * v) / most;
    if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
}

function draw() {
  const now = Date.now();
  while (state.arrivals.length && state.arrivals[0][0] < now - 1000) state.arrivals.shift();
  document.getElementById("rate").textContent = fmt.format(state.arrivals.reduce((a, [, n]) => a + n, 0));
  chart();
  if (dirty) {
    dirty = false;
    document.getElementById("total").textContent = fmt.format(state.total);
    document.getElementById("last-id").textContent = state.lastId === null ? "-" : state.lastId;
    const p50 = state.lagPercentile(0.5), p99 = state.lagPercentile(0.99);
    document.getElementById("lag50").textContent = p50 === null ? "-" : p50;
    document.getElementById("lag99").textContent = p99 === null ? "-" : p99;
    bars(document.getElementById("kinds"), state.kinds, kindColour);
    bars(document.getElementById("priorities"), state.priorities, priorityColour);
    table();
  }
}

connect();
setInterval(draw, 250);
draw();
