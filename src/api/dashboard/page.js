"use strict";
// The dashboard page: plain DOM and SVG, no framework. It calls the API it is served by,
// with the bearer token kept in this tab's session storage (never in a URL).
(() => {
  const TOKEN = "tower-usage-token";
  // The API's root: the page is served at it, with or without the trailing slash.
  const API = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
  const CURRENCY = document.querySelector('meta[name="currency"]').content || "USD";
  const FILTERS = ["service", "model", "provider", "user", "outcome", "status_class", "platform", "country"];
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    node.append(...children);
    return node;
  };
  const svg = (tag, attrs = {}) => {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  };

  // Numbers for people.
  const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });
  const money = new Intl.NumberFormat(undefined, { style: "currency", currency: CURRENCY, maximumFractionDigits: 2 });
  const fmt = {
    count: (n) => (n == null ? "–" : compact.format(n)),
    cost: (micros) => (micros == null ? "–" : money.format(micros / 1e6)),
    percent: (r) => (r == null ? "–" : (r * 100).toFixed(r < 0.001 && r > 0 ? 3 : 1) + "%"),
    micros: (us) => {
      if (us == null) return "–";
      if (us < 1000) return Math.round(us) + " µs";
      if (us < 1e6) return (us / 1000).toFixed(us < 1e4 ? 1 : 0) + " ms";
      return (us / 1e6).toFixed(2) + " s";
    },
  };

  // ---- State: the view lives in the URL fragment, so it can be bookmarked and shared.
  const view = () => new URLSearchParams(location.hash.slice(1));
  const setView = (params) => {
    const clean = new URLSearchParams();
    for (const [k, v] of params) if (v) clean.set(k, v);
    location.hash = clean.toString();
  };
  const zone = () => view().get("tz") || Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

  // The range as Unix seconds, and the one before it of the same length.
  function range() {
    const v = view();
    const now = Math.floor(Date.now() / 1000);
    const last = v.get("last") || "30d";
    let from;
    let to = now;
    if (last === "custom" && v.get("from") && v.get("to")) {
      from = Math.floor(new Date(v.get("from")).getTime() / 1000);
      to = Math.floor(new Date(v.get("to")).getTime() / 1000);
    } else if (last === "month") {
      const d = new Date();
      from = Math.floor(new Date(d.getFullYear(), d.getMonth(), 1).getTime() / 1000);
    } else {
      const hours = { "24h": 24, "7d": 168, "30d": 720 }[last] || 720;
      from = now - hours * 3600;
    }
    return { from, to, previous: { from: 2 * from - to, to: from } };
  }

  function granularity(r) {
    const chosen = view().get("granularity");
    if (chosen) return chosen;
    const hours = (r.to - r.from) / 3600;
    return hours <= 48 ? "hour" : hours <= 24 * 120 ? "day" : "week";
  }

  // The API's filter parameters for the current view (over `r`).
  function query(r, extra = {}) {
    const v = view();
    const q = new URLSearchParams({ from: String(r.from), to: String(r.to), tz: zone() });
    for (const name of FILTERS) if (v.get(name)) q.set(name, v.get(name));
    for (const [k, val] of Object.entries(extra)) if (val !== "" && val != null) q.set(k, val);
    return q;
  }

  // ---- The API.
  class Refused extends Error {}
  // Where retention removed the records an answer of this render reached back to: the
  // figures before it are the rollups' sums.
  let aggregateOnlyBefore = null;

  async function call(path, params, as = "json") {
    const token = sessionStorage.getItem(TOKEN);
    const url = API + path + (params ? "?" + params : "");
    let response;
    try {
      // Without a pasted token, the host application's cookie (if its authenticator
      // reads one) is what identifies the caller; fetch sends it to this origin.
      response = await fetch(url, { headers: token ? { Authorization: "Bearer " + token } : {} });
    } catch (e) {
      throw new Error("The server cannot be reached (" + e.message + ").");
    }
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN);
      throw new Refused("The token was refused: it is wrong or has expired. Paste a new one.");
    }
    if (!response.ok) {
      let reason = response.status + " " + response.statusText;
      try {
        const body = await response.json();
        if (body && body.message) reason = body.message;
      } catch (_) { /* not JSON */ }
      throw new Error(path + ": " + reason);
    }
    const cut = response.headers.get("usage-aggregate-only-before");
    if (cut && (!aggregateOnlyBefore || new Date(cut) > new Date(aggregateOnlyBefore))) aggregateOnlyBefore = cut;
    return as === "blob" ? response.blob() : response.json();
  }

  function showRetained() {
    const note = $("retained");
    note.hidden = !aggregateOnlyBefore;
    if (!aggregateOnlyBefore) return;
    note.dataset.before = aggregateOnlyBefore;
    const when = new Date(aggregateOnlyBefore).toLocaleString(undefined, { timeZone: zone(), dateStyle: "medium", timeStyle: "short" });
    note.textContent = "Records before " + when +
      " were removed after their retention period: figures before then are the sums kept in the rollups" +
      " (whole 15-minute slots; nothing by client platform or country).";
  }

  function say(text) {
    $("message").textContent = text;
    $("message").hidden = !text;
  }

  // ---- Rendering pieces.
  function card(metric, label, value, now, before, lowerIsBetter) {
    const node = el("div", { class: "card", "data-metric": metric }, el("div", { class: "label", text: label }), el("div", { class: "value", text: value }));
    // The exact number, for copying and for tests.
    if (now != null) node.dataset.value = String(now);
    if (before != null && now != null) {
      const change = before === 0 ? null : (now - before) / before;
      const text = change == null ? "new" : (change >= 0 ? "+" : "") + (change * 100).toFixed(1) + "% vs previous";
      const good = change != null && change !== 0 && (change < 0) === Boolean(lowerIsBetter);
      node.append(el("div", { class: "change " + (change == null || change === 0 ? "" : good ? "up" : "down"), text }));
    }
    return node;
  }

  function headline(m, prev) {
    const p = prev || {};
    const pl = p.latency || {};
    const pt = p.ttfb || {};
    const cards = [
      card("requests", "Requests", fmt.count(m.requests), m.requests, p.requests),
      card("users", "Users", fmt.count(m.unique_users), m.unique_users, p.unique_users),
      card("tokens", "Tokens", fmt.count(m.tokens.total), m.tokens.total, p.tokens && p.tokens.total),
      card("cost", "Cost", fmt.cost(m.cost_micros), m.cost_micros, p.cost_micros),
      card("error_rate", "Error rate", fmt.percent(m.error_rate), m.error_rate, p.error_rate, true),
      card("p50", "Latency p50", fmt.micros(m.latency.p50_us), m.latency.p50_us, pl.p50_us, true),
      card("p95", "Latency p95", fmt.micros(m.latency.p95_us), m.latency.p95_us, pl.p95_us, true),
      card("p99", "Latency p99", fmt.micros(m.latency.p99_us), m.latency.p99_us, pl.p99_us, true),
      card("ttfb_p50", "TTFB p50", fmt.micros(m.ttfb.p50_us), m.ttfb.p50_us, pt.p50_us, true),
      card("ttfb_p95", "TTFB p95", fmt.micros(m.ttfb.p95_us), m.ttfb.p95_us, pt.p95_us, true),
      card("unpriced", "Unpriced", fmt.count(m.unpriced), m.unpriced, p.unpriced, true),
    ];
    $("headline").replaceChildren(...cards);
  }

  function table(columns, rows, onPick) {
    if (!rows.length) return el("p", { class: "empty", text: "No data for this range yet." });
    const head = el("tr", {}, ...columns.map((c) => el("th", { scope: "col", text: c.label })));
    const body = rows.map((row) =>
      el("tr", {}, ...columns.map((c, i) => {
        const text = c.value(row);
        if (i === 0 && onPick && row.pick != null) {
          return el("td", {}, el("span", {
            class: "clickable", tabindex: "0", role: "button", text,
            title: "Filter the page by " + text,
            onclick: () => onPick(row.pick),
            onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); onPick(row.pick); } },
          }));
        }
        return el("td", { text });
      })),
    );
    return el("table", {}, el("thead", {}, head), el("tbody", {}, ...body));
  }

  const name = (key) => (key == null ? "(none)" : key);

  function breakdown(target, data, filter) {
    const rows = data.rows.map((r) => ({ ...r, pick: r.key }));
    if (data.other) rows.push({ ...data.other, key: "(other)", pick: null });
    $(target).replaceChildren(table([
      { label: "Name", value: (r) => name(r.key) },
      { label: "Requests", value: (r) => fmt.count(r.requests) },
      { label: "Tokens", value: (r) => fmt.count(r.tokens.total) },
      { label: "Cost", value: (r) => fmt.cost(r.cost_micros) },
      { label: "Errors", value: (r) => fmt.percent(r.error_rate) },
      { label: "Mean latency", value: (r) => fmt.micros(r.mean_latency_us) },
    ], rows, filter && ((key) => drill(filter, key))));
  }

  function topUsers(users) {
    $("top-users").replaceChildren(table([
      { label: "User", value: (r) => r.user },
      { label: "Requests", value: (r) => fmt.count(r.requests) },
      { label: "Tokens", value: (r) => fmt.count(r.tokens.total) },
      { label: "Cost", value: (r) => fmt.cost(r.cost_micros) },
      { label: "Errors", value: (r) => fmt.count(r.errors) },
    ], users.map((u) => ({ ...u, pick: u.user })), (user) => drill("user", user)));
  }

  const MEASURES = {
    requests: { of: (p) => p.requests, show: fmt.count, stack: true },
    tokens: { of: (p) => p.tokens.total, show: fmt.count, stack: true },
    cost: { of: (p) => p.cost_micros, show: fmt.cost, stack: true },
    errors: { of: (p) => p.errors, show: fmt.count, stack: true },
    latency: { of: (p) => p.mean_latency_us || 0, show: fmt.micros, stack: false },
    p95: { of: (p) => p.p95_us || 0, show: fmt.micros, stack: false },
  };

  // Percentiles do not add up, so they are drawn side by side, never split or stacked:
  // the latency series as a chart of two series, the total duration's and the first
  // byte's.
  function percentiles(ls) {
    const line = (name, stats) => ({ key: { kind: "value", value: name }, points: stats });
    return { ...ls, series: [line("Latency p95", ls.latency), line("Time to first byte p95", ls.ttfb)] };
  }
  const colors = () => getComputedStyle(document.documentElement).getPropertyValue("--series").split(",").map((c) => c.trim());

  function seriesName(key) {
    switch (key.kind) {
      case "total": return "All";
      case "missing": return "(none)";
      case "other": return "(other)";
      default: return String(key.value);
    }
  }

  // Bars per bucket, stacked by series; a click on a bucket narrows the range to it.
  // What the chart shows, and the metrics it was drawn with: a live update adds what
  // has arrived since to the bucket that holds now.
  let drawn = null;

  function chart(ts, metrics) {
    if (metrics) drawn = { ts, metrics };
    const target = $("chart");
    const measure = MEASURES[$("measure").value] || MEASURES.requests;
    const buckets = ts.buckets.map((b) => new Date(b));
    if (!buckets.length || !ts.series.length) {
      target.replaceChildren(el("p", { class: "empty", text: "No data for this range yet." }));
      return;
    }
    const palette = colors();
    const series = ts.series.map((s, i) => ({ name: seriesName(s.key), color: palette[i % palette.length], values: s.points.map(measure.of) }));
    const totals = buckets.map((_, i) => (measure.stack
      ? series.reduce((sum, s) => sum + (s.values[i] || 0), 0)
      : Math.max(...series.map((s) => s.values[i] || 0))));
    const max = Math.max(1, ...totals);
    const W = 900, H = 260, left = 56, bottom = 22, top = 8;
    const step = (W - left) / buckets.length;
    const width = Math.max(1, step * (measure.stack ? 0.8 : 0.8 / series.length));
    const y = (v) => H - bottom - ((H - bottom - top) * v) / max;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Chart; the table below has its numbers" });
    for (const frac of [0, 0.5, 1]) {
      const v = max * frac;
      root.append(svg("line", { class: "axis", x1: left, x2: W, y1: y(v), y2: y(v) }));
      const label = svg("text", { x: left - 4, y: y(v) + 4, "text-anchor": "end" });
      label.textContent = measure.show(v);
      root.append(label);
    }
    const dateFmt = new Intl.DateTimeFormat(undefined, ts.granularity === "hour"
      ? { timeZone: ts.time_zone, hour: "2-digit", day: "numeric", month: "short" }
      : { timeZone: ts.time_zone, day: "numeric", month: "short", year: ts.granularity === "month" ? "numeric" : undefined });
    const every = Math.ceil(buckets.length / 8);
    buckets.forEach((b, i) => {
      let base = 0;
      series.forEach((s, j) => {
        const v = s.values[i] || 0;
        const x = left + i * step + (measure.stack ? step * 0.1 : step * 0.1 + j * width);
        const y0 = measure.stack ? y(base + v) : y(v);
        const h = measure.stack ? y(base) - y(base + v) : y(0) - y(v);
        base += measure.stack ? v : 0;
        if (h <= 0) return;
        const bar = svg("rect", { class: "bar", x, y: y0, width, height: h, fill: s.color, "data-bucket": i, "data-series": j, "data-value": v });
        const tip = svg("title");
        tip.textContent = `${dateFmt.format(b)} · ${s.name}: ${measure.show(v)}`;
        bar.append(tip);
        bar.addEventListener("click", () => drillBucket(ts, i));
        root.append(bar);
      });
      if (i % every === 0) {
        const label = svg("text", { x: left + i * step + step / 2, y: H - 6, "text-anchor": "middle" });
        label.textContent = dateFmt.format(b);
        root.append(label);
      }
    });
    const legend = el("div", { class: "legend" }, ...series.map((s) => el("span", {}, el("span", { class: "swatch", style: "background:" + s.color }), s.name)));
    // The numbers behind the chart, for screen readers and for copying.
    const rows = buckets.map((b, i) => ({ b, i }));
    const numbers = el("details", {}, el("summary", { text: "Table" }), table(
      [{ label: "Bucket", value: (r) => dateFmt.format(r.b) }, ...series.map((s) => ({ label: s.name, value: (r) => measure.show(s.values[r.i] || 0) }))],
      rows,
    ));
    target.replaceChildren(root, legend, numbers);
  }

  // Each budget's spend against its limit; the table says it in numbers, the bar at a
  // glance.
  function budgets(list) {
    if (!list.length) {
      $("budgets").replaceChildren(el("p", { class: "empty", text: "No budgets yet." }));
      return;
    }
    const amount = (b, n) => (b.measure === "cost" ? fmt.cost(n) : fmt.count(n));
    const when = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
    const rows = list.map((b) => ({ ...b, share: b.limit ? Math.min(1, b.spent / b.limit) : 0 }));
    $("budgets").replaceChildren(table([
      { label: "Budget", value: (b) => b.name },
      { label: "Measure", value: (b) => b.measure },
      { label: "Spent", value: (b) => amount(b, b.spent) },
      { label: "Limit", value: (b) => amount(b, b.limit) },
      { label: "Used", value: (b) => fmt.percent(b.share) },
      { label: "Resets", value: (b) => when.format(new Date(b.resets_at)) },
      { label: "Kind", value: (b) => (b.enforce ? "hard" : "report only") },
    ], rows));
    $("budgets").querySelectorAll("tbody tr").forEach((tr, i) => {
      const share = rows[i].share;
      tr.dataset.budget = rows[i].name;
      tr.style.background = `linear-gradient(90deg, color-mix(in srgb, ${share >= 1 ? "var(--bad)" : "var(--accent)"} 18%, transparent) ${Math.round(share * 100)}%, transparent 0)`;
    });
  }

  // The rules firing now, each with what it measured when it fired.
  function alerts(firing) {
    if (!firing.length) {
      $("alerts").replaceChildren(el("p", { class: "empty", text: "No alert is firing." }));
      return;
    }
    const when = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
    const show = (signal, v) => {
      if (signal === "error_rate") return fmt.percent(v);
      if (signal === "latency_p95" || signal === "ttfb_p95") return fmt.micros(v);
      if (signal === "cost") return fmt.cost(v);
      return fmt.count(v);
    };
    $("alerts").replaceChildren(table([
      { label: "Rule", value: (a) => a.rule },
      { label: "Signal", value: (a) => a.signal.replace("_", " ") },
      { label: "Measured", value: (a) => show(a.signal, a.value) },
      { label: "Threshold", value: (a) => (a.condition === "above" ? "> " : "< ") + show(a.signal, a.threshold) },
      { label: "Window", value: (a) => a.window_minutes + " min" },
      { label: "Since", value: (a) => when.format(new Date(a.at)) },
    ], firing));
    $("alerts").querySelectorAll("tbody tr").forEach((tr, i) => { tr.dataset.alert = firing[i].rule; tr.classList.add("firing"); });
  }

  function peakHours(peak) {
    const max = Math.max(1, ...peak.counts.flat());
    const days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const head = el("tr", {}, el("th", { text: "" }), ...Array.from({ length: 24 }, (_, h) => el("th", { scope: "col", text: h % 3 === 0 ? String(h) : "" })));
    const rows = peak.counts.map((hours, d) => el("tr", {}, el("th", { scope: "row", text: days[d] }), ...hours.map((n, h) => el("td", {
      title: `${days[d]} ${h}:00 – ${n} requests`,
      style: `background: color-mix(in srgb, var(--accent) ${Math.round((100 * n) / max)}%, transparent)`,
    }))));
    $("peak-hours").replaceChildren(el("table", { class: "heat", "aria-label": "Requests per weekday and hour, " + peak.time_zone }, el("thead", {}, head), el("tbody", {}, ...rows)));
  }

  // ---- Drill-down.
  function drill(filter, value) {
    const v = view();
    v.set(filter, value);
    setView(v);
  }

  function drillBucket(ts, i) {
    const v = view();
    const from = new Date(ts.buckets[i]);
    const to = i + 1 < ts.buckets.length ? new Date(ts.buckets[i + 1]) : new Date(range().to * 1000);
    const local = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
    v.set("last", "custom");
    v.set("from", local(from));
    v.set("to", local(to));
    // One step finer: a month's days, any other bucket's hours.
    v.set("granularity", ts.granularity === "month" ? "day" : "hour");
    setView(v);
  }

  // The records that arrived since the chart was drawn fall in the bucket that holds now:
  // for a chart of one series and a measure that adds up, that bucket grows by the
  // difference in the totals.
  const TOTAL_OF = {
    requests: (m) => m.requests,
    tokens: (m) => m.tokens.total,
    cost: (m) => m.cost_micros,
    errors: (m) => m.errors,
  };

  function moveCurrentBucket(metrics) {
    const total = TOTAL_OF[$("measure").value];
    if (!drawn || !total || drawn.ts.series.length !== 1) return;
    const now = Date.now();
    const buckets = drawn.ts.buckets.map((b) => new Date(b).getTime());
    const last = buckets.length - 1;
    if (last < 0 || buckets[last] > now || range().to * 1000 < now - 60000) return;
    const added = total(metrics) - total(drawn.metrics);
    if (added <= 0) return;
    const ts = structuredClone(drawn.ts);
    const point = ts.series[0].points[last];
    const field = $("measure").value;
    if (field === "tokens") point.tokens.total += added;
    else if (field === "cost") point.cost_micros += added;
    else point[field] += added;
    drawn = { ts, metrics };
    chart(ts);
  }

  // The last hour per minute, from the live stream: requests as bars, the numbers in a
  // table behind them.
  function lastHour(minutes) {
    const W = 900, H = 90, bottom = 16;
    const max = Math.max(1, ...minutes.map((m) => m.requests));
    const step = W / minutes.length;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Requests per minute over the last hour; the table below has the numbers" });
    const time = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", timeZone: zone() });
    minutes.forEach((m, i) => {
      const h = ((H - bottom) * m.requests) / max;
      const bar = svg("rect", { x: i * step + 1, y: H - bottom - h, width: Math.max(1, step - 2), height: h, fill: "var(--accent)" });
      const tip = svg("title");
      tip.textContent = `${time.format(new Date(m.at * 1000))}: ${fmt.count(m.requests)} requests, ${fmt.count(m.errors)} errors`;
      bar.append(tip);
      root.append(bar);
      if (i % 10 === 0) {
        const label = svg("text", { x: i * step, y: H - 3 });
        label.textContent = time.format(new Date(m.at * 1000));
        root.append(label);
      }
    });
    const numbers = el("details", {}, el("summary", { text: "Table" }), table(
      [
        { label: "Minute", value: (m) => time.format(new Date(m.at * 1000)) },
        { label: "Requests", value: (m) => fmt.count(m.requests) },
        { label: "Errors", value: (m) => fmt.count(m.errors) },
        { label: "Tokens", value: (m) => fmt.count(m.tokens) },
        { label: "Cost", value: (m) => fmt.cost(m.cost_micros) },
      ],
      minutes,
    ));
    const total = minutes.reduce((sum, m) => sum + m.requests, 0);
    $("last-hour").replaceChildren(root, numbers);
    $("last-hour").dataset.total = String(total);
  }

  // ---- Live updates: `/live` pushes the headline numbers while records are written.
  // EventSource cannot send the token, so the stream is read with fetch.
  let live = null;
  let previousMetrics = null;

  function showLive(on) {
    const badge = $("live");
    badge.hidden = false;
    badge.textContent = on ? "● live" : "○ live updates off, retrying";
    badge.className = on ? "on" : "off";
  }

  function openLive(r) {
    if (live) live.abort();
    const controller = new AbortController();
    live = controller;
    const q = query(r);
    // A range up to now keeps running as records arrive.
    if ((view().get("last") || "30d") !== "custom") q.delete("to");
    (async () => {
      let wait = 1000;
      while (!controller.signal.aborted) {
        try {
          const token = sessionStorage.getItem(TOKEN);
          const response = await fetch(API + "live?" + q, {
            headers: token ? { Authorization: "Bearer " + token } : {},
            signal: controller.signal,
          });
          if (response.status === 401) return signOut("The token was refused: it is wrong or has expired. Paste a new one.");
          if (!response.ok) throw new Error(String(response.status));
          showLive(true);
          wait = 1000;
          const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value.replace(/\r\n?/g, "\n");
            let end;
            while ((end = buffer.indexOf("\n\n")) >= 0) {
              const block = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              let event = "message";
              let data = "";
              for (const line of block.split("\n")) {
                if (line.startsWith("event:")) event = line.slice(6).trim();
                else if (line.startsWith("data:")) data += line.slice(5).trim();
              }
              if (event === "minutes") lastHour(JSON.parse(data));
              if (event === "metrics") {
                const metrics = JSON.parse(data);
                headline(metrics, previousMetrics);
                moveCurrentBucket(metrics);
                document.body.dataset.live = String(Number(document.body.dataset.live || 0) + 1);
              }
            }
          }
        } catch (_) {
          if (controller.signal.aborted) return;
        }
        showLive(false);
        await new Promise((resolve) => setTimeout(resolve, wait));
        wait = Math.min(wait * 2, 30000);
      }
    })();
  }

  // ---- The breakdowns read from raw records, on demand.
  const EXTRAS = {
    platforms: { target: "by-platform", filter: "platform" },
    countries: { target: "by-country", filter: "country" },
  };
  const shownExtras = new Set();

  async function loadExtra(extra, r) {
    const { target, filter } = EXTRAS[extra];
    $(target).replaceChildren(el("p", { class: "hint", text: "Reading…" }));
    try {
      breakdown(target, await call(extra, query(r, { limit: "10" })), filter);
    } catch (e) {
      if (e instanceof Refused) return signOut(e.message);
      $(target).replaceChildren(el("p", { class: "empty", text: e.message }));
    }
  }

  // ---- Views.
  let me = null;
  let rendering = 0;

  async function renderAdmin(r) {
    const q = query(r);
    const p95 = $("measure").value === "p95";
    $("split").disabled = p95;
    const [dash, previous, series, providers, top, spend, firing] = await Promise.all([
      call("dashboard", q),
      call("metrics", query(r.previous)),
      p95
        ? call("latency", query(r, { granularity: granularity(r) })).then(percentiles)
        : call("timeseries", query(r, { granularity: granularity(r), split: $("split").value, top: $("split").value ? "6" : "" })),
      call("providers", query(r, { limit: "10" })),
      call("users/top", query(r, { by: $("rank-by").value, limit: "10" })),
      call("budgets/status"),
      call("alerts/firing"),
    ]);
    previousMetrics = previous;
    headline(dash.metrics, previous);
    chart(series, dash.metrics);
    breakdown("by-service", dash.by_service, "service");
    breakdown("by-model", dash.by_model, "model");
    breakdown("by-provider", providers, "provider");
    // The breakdowns the rollups do not keep read every record in the range: only once
    // asked for, and then again with each new view.
    for (const extra of shownExtras) loadExtra(extra, r);
    topUsers(top);
    budgets(spend);
    alerts(firing);
    peakHours(dash.peak_hours);
  }

  async function renderUser(r) {
    const mine = await call("my-usage", query(r));
    previousMetrics = null;
    headline(mine.metrics, null);
    chart(mine.daily, mine.metrics);
    breakdown("by-service", mine.by_service, null);
    breakdown("by-model", mine.by_model, null);
    budgets(mine.budgets);
  }

  async function render() {
    const ticket = ++rendering;
    syncForm();
    say("");
    const r = range();
    aggregateOnlyBefore = null;
    try {
      if (me.role === "admin") await renderAdmin(r);
      else await renderUser(r);
      if (ticket === rendering) {
        showRetained();
        document.body.dataset.rendered = String(ticket);
        if (ticket === 1) performance.mark("first-render");
        openLive(r);
      }
    } catch (e) {
      if (e instanceof Refused) return signOut(e.message);
      say(e.message);
    }
  }

  function syncForm() {
    const v = view();
    const form = $("filters");
    for (const input of form.elements) {
      if (!input.name) continue;
      input.value = input.name === "tz" ? zone() : input.name === "last" ? v.get("last") || "30d" : v.get(input.name) || "";
    }
    form.classList.toggle("custom-range", form.elements.last.value === "custom");
  }

  function signOut(text) {
    sessionStorage.removeItem(TOKEN);
    me = null;
    if (live) live.abort();
    live = null;
    $("live").hidden = true;
    $("view").hidden = true;
    $("sign-out").hidden = true;
    $("who").textContent = "";
    $("sign-in").hidden = false;
    say(text || "");
    $("token").focus();
  }

  async function start() {
    const pasted = Boolean(sessionStorage.getItem(TOKEN));
    try {
      me = await call("me");
    } catch (e) {
      // No token and no cookie the API accepts: ask for a token, without an error.
      return signOut(pasted || !(e instanceof Refused) ? e.message : "");
    }
    document.body.classList.toggle("user", me.role !== "admin");
    $("who").textContent = me.subject + " · " + me.role;
    $("sign-in").hidden = true;
    $("sign-out").hidden = false;
    $("view").hidden = false;
    await render();
  }

  // ---- Wiring.
  $("sign-in").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN, $("token").value.trim());
    $("token").value = "";
    start();
  });
  $("sign-out").addEventListener("click", () => signOut(""));
  $("filters").addEventListener("submit", (e) => {
    e.preventDefault();
    const data = new FormData(e.target);
    const v = new URLSearchParams();
    for (const [k, val] of data) {
      if (k === "tz" && val === Intl.DateTimeFormat().resolvedOptions().timeZone) continue;
      if ((k === "from" || k === "to") && data.get("last") !== "custom") continue;
      v.set(k, String(val).trim());
    }
    setView(v);
  });
  $("filters").elements.last.addEventListener("change", (e) => $("filters").classList.toggle("custom-range", e.target.value === "custom"));
  $("clear").addEventListener("click", () => {
    const v = view();
    for (const name of FILTERS) v.delete(name);
    setView(v);
  });
  $("export").addEventListener("click", async () => {
    try {
      const blob = await call("export", query(range()), "blob");
      const link = el("a", { href: URL.createObjectURL(blob), download: "usage.csv" });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    } catch (e) {
      if (e instanceof Refused) signOut(e.message);
      else say(e.message);
    }
  });
  for (const button of document.querySelectorAll("[data-extra]")) {
    button.addEventListener("click", () => {
      shownExtras.add(button.dataset.extra);
      loadExtra(button.dataset.extra, range());
    });
  }
  for (const id of ["measure", "split", "rank-by"]) $(id).addEventListener("change", () => me && render());
  window.addEventListener("hashchange", () => me && render());
  // A stream left open holds one of the browser's few connections to this host: close it
  // when the page goes away or out of sight, and open it again when it comes back.
  window.addEventListener("pagehide", () => live && live.abort());
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      if (live) live.abort();
      live = null;
    } else if (me && !live) {
      openLive(range());
    }
  });
  start();
})();
