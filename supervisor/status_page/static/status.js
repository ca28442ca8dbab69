// ibfleet's status page: reads GET /api/v1/status once a second and redraws the tables.
// Every text that comes from the fleet (reasons, alert titles, errors) is set with
// textContent, never parsed as HTML; the Content-Security-Policy allows this file only.
"use strict";

(() => {
  const POLL_MS = 1000;
  const FETCH_TIMEOUT_MS = 4000;
  const SVG = "http://www.w3.org/2000/svg";
  const SPARK_W = 180;
  const SPARK_H = 32;
  const MIN_SPAN_MS = 10000;

  const GOOD = new Set(["API_READY", "RUNNING"]);
  const BAD = new Set(["FATAL", "BACKOFF", "COMPETING_SESSION", "CRASHED", "ABSENT"]);
  const OFF = new Set(["STOPPED", "HALTED", "LOADED"]);
  const SEVERITY = { critical: "bad", error: "bad", warning: "warn", info: "off" };

  const $ = (id) => document.getElementById(id);

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    return node;
  }

  function badge(text, kind) {
    return el("span", text, `badge ${kind}`);
  }

  function stateKind(state) {
    if (GOOD.has(state)) return "ok";
    if (BAD.has(state)) return "bad";
    if (OFF.has(state)) return "off";
    return "warn";
  }

  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s}s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${s % 60}s`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h}h ${m % 60}m`;
    return `${Math.floor(h / 24)}d ${h % 24}h`;
  }

  function ms(seconds) {
    return seconds < 0.01 ? `${(seconds * 1000).toFixed(2)} ms` : `${(seconds * 1000).toFixed(1)} ms`;
  }

  function formatter(zone) {
    const options = {
      weekday: "short", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
      timeZoneName: "short",
    };
    try {
      return new Intl.DateTimeFormat(undefined, { ...options, timeZone: zone });
    } catch (_) {
      return new Intl.DateTimeFormat(undefined, { ...options, timeZone: "UTC" });
    }
  }

  // The heartbeats of the last span as a line; a missed heartbeat is a red tick at its time.
  // A history younger than the span (a fresh supervisor) is drawn over its own age.
  function sparkline(history, nowMs) {
    const oldest = history.samples.length ? Date.parse(history.samples[0].at) : nowMs;
    const span = Math.min(history.span_seconds * 1000, Math.max(MIN_SPAN_MS, nowMs - oldest));
    const start = nowMs - span;
    const box = svg("svg", {
      viewBox: `0 0 ${SPARK_W} ${SPARK_H}`, role: "img", preserveAspectRatio: "none",
    });
    const answered = history.samples.filter((s) => s.rtt_seconds !== null);
    const top = Math.max(0.002, ...answered.map((s) => s.rtt_seconds));
    const x = (at) => ((Date.parse(at) - start) / span) * SPARK_W;
    const y = (rtt) => SPARK_H - 2 - (rtt / top) * (SPARK_H - 4);
    box.append(svg("line", { x1: 0, y1: SPARK_H - 1, x2: SPARK_W, y2: SPARK_H - 1, class: "base" }));
    let run = [];
    const flush = () => {
      if (run.length > 0) {
        box.append(svg("polyline", { points: run.join(" "), class: "line" }));
        run = [];
      }
    };
    let misses = 0;
    for (const sample of history.samples) {
      const px = x(sample.at);
      if (px < 0) continue;
      if (sample.rtt_seconds === null) {
        flush();
        misses += 1;
        box.append(svg("line", { x1: px, y1: 0, x2: px, y2: SPARK_H, class: "miss" }));
      } else {
        run.push(`${px.toFixed(1)},${y(sample.rtt_seconds).toFixed(1)}`);
      }
    }
    flush();
    const title = svg("title", {});
    title.textContent = answered.length
      ? `max ${ms(top)} over the last ${duration(span / 1000)}; ${misses} missed`
      : `no answered heartbeat in the last ${duration(span / 1000)}; ${misses} missed`;
    box.append(title);
    const last = history.samples[history.samples.length - 1];
    const wrap = el("div", undefined, "spark");
    wrap.append(box);
    let value = "-";
    if (last) value = last.rtt_seconds === null ? "missed" : ms(last.rtt_seconds);
    wrap.append(el("span", value, "value"));
    wrap.dataset.samples = String(history.samples.length);
    wrap.dataset.missed = String(misses);
    return wrap;
  }

  function cell(content, cls) {
    const td = el("td", undefined, cls);
    if (content instanceof Node) td.append(content);
    else td.textContent = content === null || content === undefined ? "-" : String(content);
    return td;
  }

  function since(iso, nowMs) {
    if (!iso) return "-";
    return `${duration((nowMs - Date.parse(iso)) / 1000)} ago`;
  }

  // A fleet-file change not carried out yet: waiting for the update window, due, under way,
  // or blocked by a failed replacement until `ibfleet apply`.
  const PENDING = {
    waiting: ["pending change", "off"],
    due: ["pending change", "warn"],
    replacing: ["replacing", "warn"],
    blocked: ["rollout blocked", "bad"],
  };

  function pendingBadge(change) {
    const [text, kind] = PENDING[change.status] || ["pending change", "warn"];
    const node = badge(text, `${kind} pending`);
    const parts = (change.changed || []).join(", ") || change.change;
    let when = change.status === "waiting" && change.at ? ` at ${new Date(change.at).toISOString()}` : "";
    if (change.needs_2fa) when += " (needs 2FA)";
    node.title = `${parts}: ${change.status}${when}`;
    return node;
  }

  function renderGateways(status, nowMs) {
    const body = $("gateways").tBodies[0];
    const history = new Map(status.heartbeats.map((h) => [h.gateway, h]));
    const rows = status.gateways.map((g) => {
      const tr = el("tr");
      tr.dataset.gateway = g.name;
      tr.dataset.state = g.state;
      const name = el("span", g.name, "name");
      const mode = el("span", ` ${g.mode} · ${g.account}`, "muted");
      const first = cell(name);
      first.append(mode);
      tr.append(first);
      const state = cell(badge(g.state, stateKind(g.state)), "state");
      if (!g.should_run) state.append(el("span", " (held)", "muted"));
      if (g.pending_change) state.append(" ", pendingBadge(g.pending_change));
      tr.append(state);
      const when = cell(since(g.since, nowMs), "since");
      if (g.since) when.title = new Date(g.since).toISOString();
      tr.append(when);
      tr.append(cell(g.reason || "-", "reason"));
      const h = history.get(g.name);
      tr.append(cell(h ? sparkline(h, nowMs) : "-", "rtt"));
      const restarts = Object.values(g.restarts || {}).reduce((a, b) => Math.max(a, b), 0);
      tr.append(cell(restarts, "num"));
      tr.append(cell(g.open_alerts.length, "num alerts"));
      return tr;
    });
    body.replaceChildren(...rows);
    $("no-gateways").hidden = rows.length > 0;
  }

  function renderAlerts(status, nowMs) {
    const items = status.alerts.map((a) => {
      const li = el("li");
      li.dataset.key = a.key;
      li.append(badge(a.severity, SEVERITY[a.severity] || "warn"));
      li.append(el("span", a.title, "title"));
      li.append(el("span", `${a.key} · since ${since(a.since, nowMs)}`, "muted"));
      return li;
    });
    $("alerts").replaceChildren(...items);
    $("no-alerts").hidden = items.length > 0;
  }

  const LABELS = {
    daily_restart: "daily restart",
    weekly_reauth: "weekly re-authentication (2FA)",
    reset_window: "IB reset window",
  };

  function renderSchedule(status, nowMs) {
    const plan = status.schedule;
    const format = formatter(plan.timezone);
    const rows = plan.events.map((e) => {
      const tr = el("tr");
      tr.dataset.kind = e.kind;
      const label = LABELS[e.kind] || e.kind;
      tr.append(cell(e.kind === "reset_window" ? `${label} (${e.name})` : label));
      tr.append(cell(e.gateway || "all"));
      const when = e.until
        ? `${format.format(new Date(e.at))} – ${format.format(new Date(e.until))}`
        : format.format(new Date(e.at));
      tr.append(cell(when));
      const left = e.active
        ? `now, ends in ${duration((Date.parse(e.until) - nowMs) / 1000)}`
        : duration((Date.parse(e.at) - nowMs) / 1000);
      tr.append(cell(left, e.active ? "active" : ""));
      return tr;
    });
    $("schedule").tBodies[0].replaceChildren(...rows);
    $("schedule-zone").textContent =
      `Times on the fleet's clock (${plan.timezone}); reset windows of IB's ${plan.region} servers.`;
  }

  function renderStrategies(status) {
    const list = status.strategies;
    const body = $("strategies").tBodies[0];
    $("strategies").hidden = list === null || list.length === 0;
    $("no-strategies").hidden = !$("strategies").hidden;
    if (list === null) {
      body.replaceChildren();
      return;
    }
    const rows = list.map((s) => {
      const tr = el("tr");
      tr.dataset.strategy = s.name;
      tr.append(cell(s.name));
      tr.append(cell(s.plugin, "muted"));
      tr.append(cell(badge(s.state, stateKind(s.state)), "state"));
      tr.append(cell(s.gateway));
      tr.append(cell(s.open_orders, "num"));
      tr.append(cell(s.safe_state_runs, "num"));
      tr.append(cell(s.failovers, "num"));
      tr.append(cell(s.unknown_intents, "num"));
      tr.append(cell(s.last_error || "-", "reason"));
      return tr;
    });
    body.replaceChildren(...rows);
  }

  function render(status) {
    const nowMs = Date.parse(status.at);
    renderGateways(status, nowMs);
    renderAlerts(status, nowMs);
    renderSchedule(status, nowMs);
    renderStrategies(status);
  }

  function connection(state, text) {
    const conn = $("conn");
    conn.dataset.state = state;
    conn.textContent = text;
    document.body.classList.toggle("stale", state === "offline");
  }

  async function poll() {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
    try {
      const response = await fetch("/api/v1/status", {
        signal: abort.signal, cache: "no-store", headers: { Accept: "application/json" },
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const status = await response.json();
      render(status);
      connection("live", "live");
      $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
      document.body.dataset.updated = status.at;
    } catch (error) {
      connection("offline", `supervisor unreachable (${error.message || error}); retrying`);
    } finally {
      clearTimeout(timer);
      setTimeout(poll, POLL_MS);
    }
  }

  poll();
})();
