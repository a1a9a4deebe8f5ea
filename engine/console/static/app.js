// hookrelay operator console (SPEC 13). Plain JS, no build step. Every value
// shown comes from the admin API as it answers (masked there, SPEC 11) and
// is put into the page as text, never as markup.
"use strict";

const TOKEN = "hookrelay.token";
const REFRESH_MS = 3000;
const METRICS_MS = 2000;
const SAMPLES = 90;

const $ = (sel) => document.querySelector(sel);

// el builds an element: attrs are properties (on* are listeners), children
// are nodes or text.
function el(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else if (k === "class") n.className = v;
    else if (k === "data") Object.assign(n.dataset, v);
    else if (k in n) n[k] = v;
    else n.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    n.append(c instanceof Node ? c : String(c));
  }
  return n;
}

function badge(s) { return el("span", { class: "status s-" + String(s).split(":")[0] }, s); }

function age(seconds) {
  if (!seconds) return "";
  const s = Math.round(seconds);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
}

function when(t) {
  if (!t || t.startsWith("0001-")) return "";
  const d = new Date(t);
  return isNaN(d) ? t : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function token() { return sessionStorage.getItem(TOKEN); }

// api calls the admin API; a 401 signs the operator out.
async function api(method, path, body) {
  const headers = {};
  const t = token();
  if (t) headers.Authorization = "Bearer " + t;
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (resp.status === 401) {
    signOut("The token was refused.");
    throw new Error("missing or wrong admin token");
  }
  const text = await resp.text();
  if (path === "/metrics") {
    if (!resp.ok) throw new Error("metrics: " + resp.status);
    return text;
  }
  let v = {};
  try { v = JSON.parse(text); } catch (e) { v = { error: text }; }
  if (!resp.ok) throw new Error(v.error || resp.status + "");
  return v;
}

function flash(msg, bad) {
  const f = $("#flash");
  f.textContent = msg;
  f.className = bad ? "error" : "";
}

// confirmAction shows the page's confirm dialog and resolves to the choice.
function confirmAction(text) {
  const d = $("#confirm");
  $("#confirm-text").textContent = text;
  return new Promise((resolve) => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.returnValue = "";
    d.showModal();
  });
}

// act asks, then calls the API and says what it answered.
async function act(question, method, path, body, done) {
  if (!(await confirmAction(question))) {
    flash("Cancelled.");
    return;
  }
  try {
    const v = await api(method, path, body);
    flash(done(v));
  } catch (e) {
    flash(e.message, true);
  }
  refresh();
}

// ---- session -----------------------------------------------------------

function signOut(why) {
  sessionStorage.removeItem(TOKEN);
  showLogin(why || "");
}

function showLogin(why) {
  $("#nav").hidden = true;
  $("#view").replaceChildren();
  $("#flash").textContent = "";
  $("#login").hidden = false;
  $("#login-error").textContent = why;
  $("#token").focus();
}

async function signIn(ev) {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN, $("#token").value);
  $("#token").value = "";
  try {
    await api("GET", "/admin/destinations");
  } catch (e) {
    if (token() !== null) showLogin(e.message);
    return;
  }
  start();
}

async function start() {
  $("#login").hidden = true;
  $("#nav").hidden = false;
  try {
    await loadNames(); // the filters' choices
  } catch (e) {
    if (token() === null) return;
  }
  sampleMetrics();
  if (!location.hash) location.hash = "#/destinations"; // routes on hashchange
  else route();
}

// ---- routing and refresh -----------------------------------------------

let current = null; // { name, render(), refresh() }
let timer = null;

function parseHash() {
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/");
  return { name: parts[0] || "destinations", arg: decodeURIComponent(parts[1] || ""), params: new URLSearchParams(query || "") };
}

function route() {
  if (token() === null) return;
  const h = parseHash();
  const make = views[h.name === "event" ? "event" : h.name] || views.destinations;
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.view === (h.name === "event" ? "events" : h.name));
  }
  flash("");
  current = make(h);
  $("#view").replaceChildren(current.node);
  refresh();
}

async function refresh() {
  clearTimeout(timer);
  const v = current;
  if (!v) return;
  if (!$("#confirm").open) {
    try {
      await v.refresh();
    } catch (e) {
      if (token() !== null) flash(e.message, true);
    }
  }
  if (v === current && token() !== null) timer = setTimeout(refresh, REFRESH_MS);
}

// ---- views ---------------------------------------------------------------

let known = { providers: [], destinations: [] };

async function loadNames() {
  const [ps, ds] = await Promise.all([api("GET", "/admin/providers"), api("GET", "/admin/destinations")]);
  known = { providers: (ps.items || []).map((p) => p.name), destinations: (ds.items || []).map((d) => d.name) };
  return { ps, ds };
}

function select(id, label, values, chosen) {
  return el("label", {}, label + " ",
    el("select", { id }, el("option", { value: "" }, "any"),
      values.map((v) => el("option", { value: v, selected: v === chosen }, v))));
}

// bulkRetryForm: retry dead letters by destination/provider/key, with the
// count asked of the API (dry_run) before the operator confirms.
function bulkRetryForm() {
  const form = el("form", { class: "bar", id: "bulk" },
    el("strong", {}, "Retry dead letters"),
    select("bulk-destination", "destination", known.destinations, ""),
    select("bulk-provider", "provider", known.providers, ""),
    el("label", {}, "key ", el("input", { id: "bulk-key", placeholder: "any" })),
    el("button", { type: "submit", id: "bulk-retry" }, "Retry…"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = {};
    for (const k of ["destination", "provider", "key"]) {
      const v = $("#bulk-" + k).value.trim();
      if (v) f[k] = v;
    }
    let n;
    try {
      n = (await api("POST", "/admin/dead/retry", Object.assign({ dry_run: true }, f))).matching;
    } catch (e) {
      flash(e.message, true);
      return;
    }
    const scope = Object.entries(f).map(([k, v]) => k + " " + v).join(", ") || "every destination";
    if (n === 0) {
      flash("No dead deliveries match (" + scope + ").");
      return;
    }
    act("Retry " + n + " dead " + (n === 1 ? "delivery" : "deliveries") + " (" + scope + ")?", "POST", "/admin/dead/retry", f,
      (v) => "Requeued " + v.requeued + ".");
  });
  return form;
}

const views = {
  destinations() {
    const body = el("tbody");
    const held = el("tbody");
    const bulk = el("div");
    const node = el("div", {},
      el("h2", {}, "Destinations"),
      el("table", { id: "destinations" }, el("thead", {}, el("tr", {},
        ["Name", "State", "Pending", "Dead", "Held keys", "Oldest pending", "Last failure", ""].map((h) => el("th", {}, h)))), body),
      bulk,
      el("h3", {}, "Held keys"),
      el("table", { id: "held" }, el("thead", {}, el("tr", {},
        ["Destination", "Provider", "Key", "Blocked by", "Waiting"].map((h) => el("th", {}, h)))), held));
    return {
      node,
      async refresh() {
        const { ds } = await loadNames();
        if (!bulk.firstChild) bulk.append(bulkRetryForm());
        body.replaceChildren(...(ds.items || []).map((d) => {
          const lf = d.last_failure;
          const pause = d.paused
            ? el("button", { class: "resume", onclick: () => act("Resume sending to " + d.name + "?", "POST",
              "/admin/destinations/" + encodeURIComponent(d.name) + "/resume", undefined, () => d.name + " resumed.") }, "Resume")
            : el("button", { class: "pause", onclick: () => act("Pause sending to " + d.name + "? Its queue is kept.", "POST",
              "/admin/destinations/" + encodeURIComponent(d.name) + "/pause", undefined, () => d.name + " paused.") }, "Pause");
          return el("tr", { data: { name: d.name } },
            el("td", {}, el("a", { href: "#/events?destination=" + encodeURIComponent(d.name) }, d.name)),
            el("td", {}, badge(d.paused ? "paused" : "sending")),
            el("td", { class: "num pending" }, d.pending ?? ""),
            el("td", { class: "num dead" }, d.dead ? el("a", { href: "#/events?status=dead&destination=" + encodeURIComponent(d.name) }, d.dead) : d.dead ?? ""),
            el("td", { class: "num" }, d.held_keys ?? ""),
            el("td", { class: "num" }, age(d.oldest_pending_seconds)),
            el("td", {}, lf ? [when(lf.at), " ", el("span", { class: "mono" }, lf.status || lf.error), " ",
              el("span", { class: "muted" }, (lf.response || "").slice(0, 80))] : ""),
            el("td", {}, pause));
        }));
        const rows = [];
        for (const d of ds.items || []) {
          for (const h of d.held || []) {
            rows.push(el("tr", {}, el("td", {}, d.name), el("td", {}, h.provider), el("td", { class: "mono" }, h.key),
              el("td", {}, el("a", { href: "#/event/" + h.blocked_by, class: "mono" }, h.blocked_by)), el("td", { class: "num" }, h.waiting)));
          }
        }
        held.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colSpan: 5, class: "muted" }, "No key is held."))]));
      },
    };
  },

  providers() {
    const body = el("tbody");
    const node = el("div", {}, el("h2", {}, "Providers"),
      el("table", { id: "providers" }, el("thead", {}, el("tr", {},
        ["Name", "Paths", "State", "Registration", "Polling", ""].map((h) => el("th", {}, h)))), body));
    return {
      node,
      async refresh() {
        const ps = await api("GET", "/admin/providers");
        const typing = document.activeElement;
        if (typing && typing.matches("#providers .poll-key") && typing.value) return; // keep what is being typed
        body.replaceChildren(...(ps.items || []).map((p) => {
          let polling = "";
          if (p.poll || p.polling_unavailable) {
            polling = p.polling_unavailable
              ? [badge("failing"), " unavailable: " + p.polling_unavailable]
              : [p.poll.keys + (p.poll.more ? "+" : "") + " keys", p.poll.failing ? [", ", badge("failing"), " " + p.poll.failing] : "",
                when(p.poll.next_at) ? el("div", { class: "muted" }, "next " + when(p.poll.next_at)) : ""];
          }
          let add = "";
          if (p.poll && !p.polling_unavailable && !p.disabled) {
            const input = el("input", { placeholder: "key", class: "poll-key", size: 14 });
            add = el("form", { class: "bar" }, input, el("button", { type: "submit", class: "poll-add" }, "Add poll key"));
            add.addEventListener("submit", (ev) => {
              ev.preventDefault();
              const key = input.value.trim();
              if (!key) return;
              input.value = "";
              act("Poll key " + key + " of " + p.name + "?", "POST", "/admin/providers/" + encodeURIComponent(p.name) + "/poll",
                { key }, (v) => "Polling " + v.key + " of " + v.provider + ".");
            });
          }
          return el("tr", { data: { name: p.name } },
            el("td", {}, el("a", { href: "#/events?provider=" + encodeURIComponent(p.name) }, p.name), el("div", { class: "muted" }, p.file)),
            el("td", { class: "mono" }, (p.paths || []).join(" ")),
            el("td", { class: "state" }, p.disabled ? [badge("disabled"), " " + p.disabled] : badge("enabled"),
              p.register_unavailable ? el("div", { class: "muted" }, "registration unavailable: " + p.register_unavailable) : ""),
            el("td", {}, p.registration ? badge(p.registration) : el("span", { class: "muted" }, "none")),
            el("td", { class: "polling" }, polling || el("span", { class: "muted" }, "none")),
            el("td", {}, add));
        }));
      },
    };
  },

  events(h) {
    const p = h.params;
    const body = el("tbody");
    const cursors = [""]; // cursor of each page seen, for "Newer"
    let page = 0;
    let next = "";
    const older = el("button", { id: "older", type: "button", onclick: () => { cursors[page + 1] = next; page++; refresh(); } }, "Older →");
    const newer = el("button", { id: "newer", type: "button", onclick: () => { page--; refresh(); } }, "← Newer");
    const filters = el("form", { class: "bar", id: "filters" },
      select("f-status", "status", ["pending", "delivered", "dead", "held", "skipped", "quarantined"], p.get("status") || ""),
      select("f-provider", "provider", known.providers, p.get("provider") || ""),
      select("f-destination", "destination", known.destinations, p.get("destination") || ""),
      el("label", {}, "type ", el("input", { id: "f-type", value: p.get("type") || "", size: 16 })),
      el("label", {}, "key ", el("input", { id: "f-key", value: p.get("key") || "", size: 16 })),
      el("button", { type: "submit", id: "apply" }, "Apply"));
    filters.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const q = new URLSearchParams();
      for (const k of ["status", "provider", "destination", "type", "key"]) {
        const v = $("#f-" + k).value.trim();
        if (v) q.set(k, v);
      }
      location.hash = "#/events" + (q.toString() ? "?" + q : "");
    });
    const node = el("div", {}, el("h2", {}, "Events"), filters,
      el("table", { id: "events" }, el("thead", {}, el("tr", {},
        ["Received", "Id", "Provider", "Type", "Key", "Status"].map((x) => el("th", {}, x)))), body),
      el("div", { class: "pager" }, newer, older, el("span", { id: "page", class: "muted" })));
    return {
      node,
      async refresh() {
        const q = new URLSearchParams(p);
        q.set("limit", "25");
        if (cursors[page]) q.set("cursor", cursors[page]);
        const v = await api("GET", "/admin/events?" + q);
        next = v.next_cursor;
        const quarantine = p.get("status") === "quarantined";
        body.replaceChildren(...(v.items || []).map((e) => el("tr", { data: { id: e.id, status: e.status } },
          el("td", {}, when(e.received_at)),
          el("td", {}, quarantine ? el("a", { href: "#/quarantine", class: "mono" }, e.id) : el("a", { href: "#/event/" + e.id, class: "mono" }, e.id)),
          el("td", {}, e.provider), el("td", {}, e.type || (quarantine ? e.reason : "")), el("td", { class: "mono" }, e.key || ""),
          el("td", {}, badge(e.status)))));
        if (!(v.items || []).length) body.append(el("tr", {}, el("td", { colSpan: 6, class: "muted" }, "No events match.")));
        newer.disabled = page === 0;
        older.disabled = !next;
        $("#page").textContent = "page " + (page + 1) + (page === 0 ? " (live)" : "");
      },
    };
  },

  event(h) {
    const id = h.arg;
    const head = el("div");
    const dels = el("div");
    const retry = el("button", { id: "retry", onclick: () => act("Retry the dead deliveries of " + id + "?", "POST",
      "/admin/events/" + encodeURIComponent(id) + "/retry", undefined, (v) => "Requeued " + v.requeued + ".") }, "Retry");
    const skip = el("button", { id: "skip", onclick: () => act("Skip the dead and held deliveries of " + id + "? Its key is released.", "POST",
      "/admin/events/" + encodeURIComponent(id) + "/skip", undefined, (v) => "Skipped " + v.skipped + ".") }, "Skip");
    const node = el("div", {}, el("h2", {}, "Event ", el("span", { class: "mono" }, id)), el("div", { class: "bar" }, retry, " ", skip), head, dels);
    return {
      node,
      async refresh() {
        const v = await api("GET", "/admin/events/" + encodeURIComponent(id));
        const e = v.event;
        const ds = v.deliveries || [];
        retry.disabled = !ds.some((d) => d.status === "dead");
        skip.disabled = !ds.some((d) => d.status === "dead" || d.status === "held");
        head.replaceChildren(
          el("table", { id: "event" }, el("tbody", {},
            [["Status", badge(e.status)], ["Provider", e.provider], ["Source", e.source], ["Type", e.type], ["Key", e.key],
              ["Sequence", e.sequence], ["Received", when(e.received_at)], ["Occurred", when(e.occurred_at)], ["Idempotency id", e.idempotency_id]]
              .map(([k, x]) => el("tr", {}, el("th", {}, k), el("td", {}, x ?? ""))))),
          el("h3", {}, "Data"), el("pre", { id: "event-data" }, JSON.stringify(e.data, null, 2)),
          el("h3", {}, "Raw"), el("pre", { id: "event-raw" }, typeof e.raw === "string" ? e.raw : JSON.stringify(e.raw, null, 2)));
        dels.replaceChildren(el("h3", {}, "Deliveries"), ...ds.map((d) => el("div", { class: "delivery", data: { destination: d.destination, status: d.status } },
          el("p", {}, el("strong", {}, d.destination), " ", badge(d.status),
            when(d.next_attempt_at) ? " next attempt " + when(d.next_attempt_at) : "",
            d.attempts_before_retry ? el("span", { class: "muted" }, " (" + d.attempts_before_retry + " attempts before the last retry)") : ""),
          el("table", { class: "attempts" }, el("thead", {}, el("tr", {}, ["#", "At", "Status", "Error", "Duration", "Response"].map((x) => el("th", {}, x)))),
            el("tbody", {}, (d.attempts || []).map((a, i) => el("tr", {},
              el("td", { class: "num" }, i + 1), el("td", {}, when(a.at)), el("td", {}, a.status || ""), el("td", { class: "error" }, a.error),
              el("td", { class: "num" }, a.duration_ms + " ms"), el("td", {}, el("code", {}, a.response)))))))));
      },
    };
  },

  rejections() {
    const body = el("tbody");
    const node = el("div", {}, el("h2", {}, "Rejections"), el("p", { class: "muted" }, "Requests refused by a verifier or a require (401), newest first; credential headers masked, the body as its SHA-256."),
      el("table", { id: "rejections" }, el("thead", {}, el("tr", {}, ["At", "Provider", "Path", "Reason", "Headers", "Body SHA-256", "From"].map((x) => el("th", {}, x)))), body));
    return {
      node,
      async refresh() {
        const v = await api("GET", "/admin/rejections?limit=200");
        body.replaceChildren(...(v.items || []).map((r) => el("tr", {},
          el("td", {}, when(r.at)), el("td", {}, r.provider), el("td", { class: "mono" }, r.path), el("td", { class: "error" }, r.reason),
          el("td", { class: "mono" }, Object.entries(r.headers || {}).map(([k, x]) => el("div", {}, k + ": " + x))),
          el("td", { class: "mono", title: r.body_sha256 }, (r.body_sha256 || "").slice(0, 16) + "…"), el("td", { class: "mono" }, r.remote_addr))));
        if (!(v.items || []).length) body.append(el("tr", {}, el("td", { colSpan: 7, class: "muted" }, "No rejected request.")));
      },
    };
  },

  quarantine() {
    const body = el("tbody");
    const all = el("button", { id: "reprocess-all", onclick: () => act("Reprocess every quarantined request with the current configuration?", "POST",
      "/admin/quarantine/reprocess", {}, reprocessed) }, "Reprocess all…");
    const node = el("div", {}, el("h2", {}, "Quarantine"), el("p", { class: "muted" }, "Verified requests the configuration could not decrypt or map. Reprocessing maps them again with the configuration in force."),
      el("div", { class: "bar" }, all),
      el("table", { id: "quarantine" }, el("thead", {}, el("tr", {}, ["Received", "Id", "Provider", "Path", "Reason", "Headers", "Body", ""].map((x) => el("th", {}, x)))), body));
    return {
      node,
      async refresh() {
        const v = await api("GET", "/admin/quarantine?limit=200");
        all.disabled = !(v.items || []).length;
        body.replaceChildren(...(v.items || []).map((q) => el("tr", { data: { id: q.id } },
          el("td", {}, when(q.received_at)), el("td", { class: "mono" }, q.id), el("td", {}, q.provider), el("td", { class: "mono" }, q.method + " " + q.path),
          el("td", { class: "error reason" }, q.reason),
          el("td", { class: "mono" }, Object.entries(q.headers || {}).map(([k, x]) => el("div", {}, k + ": " + x))),
          el("td", { class: "mono" }, q.body_bytes + " B"),
          el("td", {}, el("button", { class: "reprocess", onclick: () => act("Reprocess " + q.id + "?", "POST", "/admin/quarantine/reprocess", { ids: [q.id] }, reprocessed) }, "Reprocess")))));
        if (!(v.items || []).length) body.append(el("tr", {}, el("td", { colSpan: 8, class: "muted" }, "Nothing is quarantined.")));
      },
    };
  },

  charts() {
    const box = el("div", { class: "charts", id: "charts" });
    const node = el("div", {}, el("h2", {}, "Charts"), el("p", { class: "muted" }, "From this relay's /metrics, read every " + METRICS_MS / 1000 + " s while the console is open; the last " + SAMPLES + " readings."), box);
    return { node, refresh: async () => drawCharts(box) };
  },
};

function reprocessed(v) {
  const failed = v.failed || [];
  return "Reprocessed " + v.reprocessed + (failed.length ? "; " + failed.length + " still failing: " + failed.map((f) => f.reason).join("; ") : ".");
}

// ---- metrics ----------------------------------------------------------------

// parseMetrics reads the Prometheus text format into sums by metric name
// and one label: {name: {labelValue: sum}}.
function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    const v = parseFloat(m[3]);
    if (isNaN(v)) continue;
    const key = labels.outcome || "";
    out[m[1]] = out[m[1]] || {};
    out[m[1]][key] = (out[m[1]][key] || 0) + v;
  }
  return out;
}

const samples = []; // {t, m}
let metricsTimer = null;

async function sampleMetrics() {
  clearTimeout(metricsTimer);
  if (token() === null) return;
  try {
    samples.push({ t: Date.now() / 1000, m: parseMetrics(await api("GET", "/metrics")) });
    if (samples.length > SAMPLES + 1) samples.shift();
    if (current && parseHash().name === "charts") drawCharts($("#charts"));
  } catch (e) {
    // shown by the views' own refresh
  }
  metricsTimer = setTimeout(sampleMetrics, METRICS_MS);
}

function total(m, name, key) {
  const x = m[name] || {};
  return key === undefined ? Object.values(x).reduce((a, b) => a + b, 0) : x[key] || 0;
}

// series derives one value per pair of consecutive samples.
function series(f) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1], b = samples[i];
    const dt = b.t - a.t;
    if (dt > 0) out.push(Math.max(0, f(a.m, b.m, dt)) || 0);
  }
  return out;
}

const rate = (name, key) => (a, b, dt) => (total(b, name, key) - total(a, name, key)) / dt;
const mean = (name) => (a, b) => {
  const n = total(b, name + "_count") - total(a, name + "_count");
  return n > 0 ? (1000 * (total(b, name + "_sum") - total(a, name + "_sum"))) / n : 0;
};

const COLORS = ["#1f5fbf", "#b3261e", "#9a6700", "#1e7d32", "#6b3fa0"];

function drawCharts(box) {
  if (!box) return;
  const charts = [
    { id: "chart-ingest", title: "Ingest (requests/s)", lines: ["accepted", "duplicate", "rejected", "quarantined", "error"].map((o) => [o, series(rate("hookrelay_ingest_requests_total", o))]) },
    { id: "chart-deliveries", title: "Deliveries (/s)", lines: ["success", "retry", "dead", "skipped"].map((o) => [o, series(rate("hookrelay_deliveries_total", o))]) },
    { id: "chart-latency", title: "Latency (mean ms)", lines: [["ingest", series(mean("hookrelay_ingest_duration_seconds"))], ["delivery", series(mean("hookrelay_delivery_duration_seconds"))]] },
  ];
  const last = samples.length ? samples[samples.length - 1].m : {};
  box.replaceChildren(...charts.map((c) => chart(c)),
    el("div", { class: "chart", id: "chart-now" }, el("strong", {}, "Now"),
      el("table", {}, el("tbody", {}, [["pending", total(last, "hookrelay_pending")], ["dead", total(last, "hookrelay_dead")],
        ["held keys", total(last, "hookrelay_held_keys")], ["spool bytes", total(last, "hookrelay_spool_bytes")], ["readings", samples.length]]
        .map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", { class: "num" }, v)))))));
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  return n;
}

// chart draws lines over the last SAMPLES readings, newest on the right,
// scaled to the largest value (stretched to the box's width).
function chart(c) {
  const W = 400, H = 160;
  const max = Math.max(1e-9, ...c.lines.flatMap(([, s]) => s));
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": c.title });
  for (const y of [0, H / 2, H - 1]) s.append(svg("line", { x1: 0, y1: y, x2: W, y2: y, stroke: "#d9dee6", "vector-effect": "non-scaling-stroke" }));
  const step = W / Math.max(1, SAMPLES - 1);
  c.lines.forEach(([, points], i) => {
    if (!points.length) return;
    const off = SAMPLES - points.length;
    const d = points.map((v, j) => `${((off + j) * step).toFixed(1)},${(H - 2 - (v / max) * (H - 6)).toFixed(1)}`).join(" ");
    s.append(svg("polyline", { points: d, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 1.8,
      "vector-effect": "non-scaling-stroke", class: "series" }));
  });
  const legend = el("div", { class: "legend" }, c.lines.map(([name, points], i) => {
    const sw = el("i");
    sw.style.background = COLORS[i % COLORS.length];
    return el("span", {}, sw, name + " " + (points.length ? fmt(points[points.length - 1]) : "–"));
  }));
  return el("div", { class: "chart", id: c.id }, el("strong", {}, c.title), el("span", { class: "muted scale" }, " top of scale " + fmt(max)), s, legend);
}

function fmt(v) { return v < 10 ? v.toFixed(2) : Math.round(v) + ""; }

// ---- start ---------------------------------------------------------------

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  $("#login").addEventListener("submit", signIn);
  $("#logout").addEventListener("click", () => signOut(""));
  if (token() === null) showLogin("");
  else start();
});
