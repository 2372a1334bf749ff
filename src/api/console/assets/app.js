// maskd console: a hash-routed page over /console/api. Everything shown is built with DOM
// nodes and textContent (message bodies and names come from outside: never parsed as HTML).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const main = () => document.getElementById("main");

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function reveal() {
  return document.getElementById("reveal").checked;
}

async function api(path, init) {
  const sep = path.includes("?") ? "&" : "?";
  const url = new URL(path + (reveal() ? sep + "reveal=1" : ""), location.origin);
  const r = await fetch(url, Object.assign({ headers: { Accept: "application/json" } }, init || {}));
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.message || "HTTP " + r.status);
  return body;
}

function table(id, head, rows) {
  return h("table", { id, class: "grid" },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows));
}

function when(t) {
  return t ? t.replace("T", " ").replace("Z", " UTC") : "";
}

function statusBadge(status) {
  return h("span", { class: "badge " + String(status || "").replace(/[^a-z-]/g, "") }, status || "");
}

// A line chart of numbers in use against the pool's size over time.
function utilisationChart(points, big) {
  const w = big ? 640 : 220, ht = big ? 180 : 48, pad = big ? 28 : 2;
  const svg = s("svg", { width: w, height: ht, viewBox: `0 0 ${w} ${ht}`, class: "chart", role: "img" });
  if (!points.length) return svg;
  const t0 = points[0].t, t1 = Math.max(points[points.length - 1].t, t0 + 1);
  const max = Math.max(1, ...points.map((p) => p.size));
  const x = (t) => pad + ((t - t0) / (t1 - t0)) * (w - 2 * pad);
  const y = (v) => ht - pad - (v / max) * (ht - 2 * pad);
  svg.append(s("title", {}, `numbers in use, of ${max}`));
  svg.append(s("line", { x1: pad, y1: y(max), x2: w - pad, y2: y(max), class: "limit" }));
  // A step line: each sample holds until the next one.
  const steps = [];
  points.forEach((p, i) => {
    const next = i + 1 < points.length ? points[i + 1].t : t1;
    steps.push(`${x(p.t).toFixed(1)},${y(p.in_use).toFixed(1)}`, `${x(next).toFixed(1)},${y(p.in_use).toFixed(1)}`);
  });
  const pts = steps.join(" ");
  svg.append(s("polyline", { points: pts, class: "use" }));
  if (big) {
    svg.append(s("text", { x: 2, y: y(max) + 4, class: "axis" }, max));
    svg.append(s("text", { x: 2, y: ht - pad + 4, class: "axis" }, 0));
    svg.append(s("text", { x: pad, y: ht - 4, class: "axis" }, when(new Date(t0 * 1000).toISOString().slice(0, 16) + "Z")));
  }
  return svg;
}

// Bars per day (messages and calls) over every number of a pool.
function loadChart(dates, numbers) {
  const w = 640, ht = 160, pad = 24;
  const per = dates.map((d, i) => numbers.reduce((a, n) => {
    a.messages += n.days[i].messages;
    a.calls += n.days[i].calls;
    return a;
  }, { messages: 0, calls: 0 }));
  const max = Math.max(1, ...per.map((p) => p.messages + p.calls));
  const bw = (w - 2 * pad) / dates.length;
  const svg = s("svg", { width: w, height: ht, viewBox: `0 0 ${w} ${ht}`, class: "chart", id: "load-chart", role: "img" });
  svg.append(s("title", {}, "messages and calls per day"));
  per.forEach((p, i) => {
    const hm = (p.messages / max) * (ht - 2 * pad), hc = (p.calls / max) * (ht - 2 * pad);
    const x0 = pad + i * bw + 2;
    svg.append(s("rect", { x: x0, y: ht - pad - hm, width: bw - 4, height: hm, class: "messages" }));
    svg.append(s("rect", { x: x0, y: ht - pad - hm - hc, width: bw - 4, height: hc, class: "calls" }));
    svg.append(s("text", { x: x0, y: ht - 6, class: "axis" }, dates[i].slice(5)));
  });
  svg.append(s("text", { x: 2, y: pad, class: "axis" }, max));
  return svg;
}

// One number's messages and calls per day, as small bars with each day's figures on hover.
function dailyBars(days) {
  const w = 7 * 12, ht = 24;
  const max = Math.max(1, ...days.map((d) => d.messages + d.calls));
  const svg = s("svg", { width: w, height: ht, viewBox: `0 0 ${w} ${ht}`, class: "bars", role: "img" });
  days.forEach((d, i) => {
    const v = d.messages + d.calls, bh = Math.max(v ? 2 : 0, (v / max) * ht);
    svg.append(s("rect", { x: i * 12 + 1, y: ht - bh, width: 10, height: bh, class: "day" },
      s("title", {}, `${d.date}: ${d.sessions} sessions, ${d.messages} messages, ${d.calls} calls, ${d.minutes} min`)));
  });
  return svg;
}

async function pageServices() {
  const data = await api("/console/api/services");
  const rows = data.services.map((v) => h("tr", { "data-sid": v.sid },
    h("td", {}, h("a", { href: "#/service/" + v.sid }, v.unique_name)),
    h("td", { class: "num" }, v.numbers),
    h("td", { class: "num in-use" }, v.numbers_in_use),
    h("td", { class: "num" }, v.numbers ? Math.round((100 * v.numbers_in_use) / v.numbers) + " %" : "–"),
    h("td", { class: "num active" }, v.sessions_active),
    h("td", {}, utilisationChart(v.utilisation, false))));
  return [h("h2", {}, "Services and their pools"),
    table("services", ["Service", "Numbers", "In use", "Utilisation", "Active sessions", "Use over time"], rows)];
}

async function pageService(sid) {
  const [all, load] = await Promise.all([
    api("/console/api/services"),
    api(`/console/api/services/${encodeURIComponent(sid)}/numbers?days=7`),
  ]);
  const svc = all.services.find((v) => v.sid === sid);
  if (!svc) throw new Error("no such service");
  const rows = load.numbers.map((n) => h("tr", { "data-number": n.phone_number },
    h("td", {}, n.phone_number),
    h("td", {}, n.carrier || ""),
    h("td", { class: "num" }, n.in_use),
    h("td", { class: "num sessions" }, n.totals.sessions),
    h("td", { class: "num messages" }, n.totals.messages),
    h("td", { class: "num calls" }, n.totals.calls),
    h("td", { class: "num minutes" }, n.totals.minutes),
    h("td", { class: "num" }, n.totals.out_of_session),
    h("td", {}, dailyBars(n.days))));
  return [
    h("h2", {}, "Service ", h("span", { id: "service-name" }, svc.unique_name)),
    h("p", {}, `${svc.numbers_in_use} of ${svc.numbers} numbers in use, ${svc.sessions_active} active sessions.`),
    h("h3", {}, "Numbers in use over time"),
    utilisationChart(svc.utilisation, true),
    h("h3", {}, `Load per day (last ${load.dates.length} days)`),
    loadChart(load.dates, load.numbers),
    h("p", { class: "legend" }, h("span", { class: "key messages" }), " messages ", h("span", { class: "key calls" }), " calls"),
    h("h3", {}, "Per number, last 7 days"),
    table("numbers", ["Number", "Carrier", "Users now", "Sessions", "Messages", "Calls", "Minutes", "Out of session", "Per day"], rows),
  ];
}

function participantsText(parts) {
  return parts.map((p) => `${p.identifier} ↔ ${p.proxy_identifier}${p.deleted ? " (removed)" : ""}`).join(", ");
}

async function pageSessions(query) {
  const q = query.get("q") || "";
  const data = await api("/console/api/sessions?q=" + encodeURIComponent(q));
  const input = h("input", { id: "search", type: "search", value: q, placeholder: "Session SID, unique name or a participant's number (last 4 digits or more)", size: 60 });
  const form = h("form", { id: "search-form", onsubmit: (e) => {
    e.preventDefault();
    location.hash = "#/sessions?q=" + encodeURIComponent(input.value);
  } }, input, " ", h("button", { type: "submit" }, "Search"));
  const rows = data.sessions.map((v) => h("tr", { "data-sid": v.sid },
    h("td", {}, h("a", { href: "#/session/" + v.sid }, v.unique_name || v.sid)),
    h("td", {}, v.service),
    h("td", {}, statusBadge(v.status), v.closed_reason ? ` (${v.closed_reason})` : ""),
    h("td", { class: "participants" }, participantsText(v.participants)),
    h("td", {}, when(v.date_created))));
  return [h("h2", {}, "Sessions"), form,
    h("p", { class: "muted" }, `${data.sessions.length} shown, newest first.`),
    table("results", ["Session", "Service", "Status", "Participants (number ↔ proxy)", "Created"], rows)];
}

function event(e, recordings) {
  const who = (p) => (p ? `${p.number} (via ${p.proxy})` : "the API");
  if (e.type === "message") {
    return h("li", { class: "event message", "data-sid": e.sid },
      h("span", { class: "when" }, when(e.at)),
      h("span", { class: "what" }, "Message from ", who(e.from), " to ", who(e.to), " "),
      statusBadge(e.status),
      h("blockquote", { class: "body" }, e.body === null ? "" : String(e.body)));
  }
  const recs = recordings.filter((r) => e.call_sids.includes(r.call_sid));
  return h("li", { class: "event call", "data-sid": e.sid },
    h("span", { class: "when" }, when(e.at)),
    h("span", { class: "what" }, "Call from ", who(e.from), " to ", who(e.to), " "),
    statusBadge(e.status),
    e.duration !== null && e.duration !== undefined ? h("span", { class: "duration" }, ` ${e.duration} s`) : null,
    recs.map((r) => h("div", { class: "recording", "data-sid": r.sid },
      r.status === "completed"
        ? h("audio", { controls: true, preload: "metadata", src: r.media_url })
        : h("span", { class: "muted" }, `recording ${r.status}${r.reason ? ": " + r.reason : ""}`))));
}

async function pageSession(sid) {
  const v = await api(`/console/api/sessions/${encodeURIComponent(sid)}`);
  const active = v.status === "open" || v.status === "in-progress";
  const note = h("p", { id: "close-note", class: "muted" });
  const close = active ? h("button", { id: "close", class: "danger", onclick: async () => {
    if (!window.confirm("Close this session? Its numbers stop routing at once.")) return;
    try {
      const r = await api(`/console/api/sessions/${encodeURIComponent(sid)}/close`, {
        method: "POST",
        headers: { Accept: "application/json", "X-Maskd-Console": "1" },
      });
      note.textContent = `Closed (${r.closed_reason}).`;
      route();
    } catch (err) {
      note.textContent = "Could not close: " + err.message;
    }
  } }, "Close session") : null;
  return [
    h("h2", {}, "Session ", h("span", { id: "session-name" }, v.unique_name || v.sid)),
    h("dl", { class: "facts" },
      h("dt", {}, "SID"), h("dd", {}, v.sid),
      h("dt", {}, "Service"), h("dd", {}, v.service),
      h("dt", {}, "Status"), h("dd", { id: "session-status" }, v.status, v.closed_reason ? ` (${v.closed_reason})` : ""),
      h("dt", {}, "Mode"), h("dd", {}, v.mode),
      h("dt", {}, "Participants"), h("dd", { class: "participants" }, participantsText(v.participants)),
      h("dt", {}, "Created"), h("dd", {}, when(v.date_created)),
      h("dt", {}, "Last interaction"), h("dd", {}, when(v.date_last_interaction)),
      h("dt", {}, "Ended"), h("dd", {}, when(v.date_ended))),
    close, note,
    h("h3", {}, "Timeline"),
    v.events.length ? h("ol", { id: "timeline" }, v.events.map((e) => event(e, v.recordings))) : h("p", { class: "muted" }, "No messages or calls yet."),
  ];
}

async function pageContacts(query) {
  const all = await api("/console/api/services");
  const sid = query.get("service") || (all.services[0] && all.services[0].sid);
  const picker = h("select", { id: "service-picker", onchange: (e) => { location.hash = "#/contacts?service=" + e.target.value; } },
    all.services.map((v) => h("option", { value: v.sid, selected: v.sid === sid }, v.unique_name)));
  if (!sid) return [h("h2", {}, "Out-of-session contacts"), h("p", {}, "No services.")];
  const data = await api(`/console/api/services/${encodeURIComponent(sid)}/contacts`);
  const rows = data.contacts.map((c) => h("tr", {},
    h("td", {}, c.proxy_number),
    h("td", { class: "sender" }, c.sender),
    h("td", { class: "num" }, c.messages),
    h("td", { class: "num" }, c.calls),
    h("td", {}, when(c.first_contact)),
    h("td", {}, when(c.last_contact)),
    h("td", {}, c.session_sid ? h("a", { href: "#/session/" + c.session_sid }, "session followed") : "no session yet")));
  return [h("h2", {}, "Out-of-session contacts"),
    h("p", {}, "Strangers who reached a proxy number with no session: leads, or abuse. ", picker),
    table("contacts", ["Proxy number", "From", "Messages", "Calls", "First", "Last", "Lead"], rows)];
}

async function pageHealth() {
  const v = await api("/console/api/health");
  const up = (b) => h("span", { class: "badge " + (b ? "up" : "down") }, b ? "up" : "down");
  return [
    h("h2", {}, "Status callbacks"),
    h("p", {}, "Queued: ", h("strong", { id: "callbacks-queued" }, v.callbacks.queued)),
    table("callback-queue", ["Id", "Interaction", "Created", "Status"], v.callbacks.oldest.map((c) =>
      h("tr", {}, h("td", {}, c.id), h("td", {}, c.interaction_sid), h("td", {}, when(c.created)), h("td", {}, c.status || "interaction changed")))),
    h("h3", {}, "Recent failures"),
    table("failures", ["When", "Kind", "URL", "Outcome"], v.callback_failures.map((f) =>
      h("tr", {}, h("td", {}, when(f.at)), h("td", {}, f.kind), h("td", {}, f.url), h("td", {}, f.outcome)))),
    h("h2", {}, "Carriers"),
    h("h3", {}, "SIP trunks (OPTIONS probes)"),
    table("trunks", ["Carrier", "Trunk", "State"], v.trunks.map((t) =>
      h("tr", {}, h("td", {}, t.carrier), h("td", {}, t.trunk), h("td", {}, up(t.up))))),
    h("h3", {}, "SMPP binds"),
    table("binds", ["Peer", "Binds", "State"], v.binds.map((b) =>
      h("tr", { "data-peer": b.peer }, h("td", {}, b.peer), h("td", { class: "num" }, b.binds), h("td", {}, up(b.binds > 0))))),
  ];
}

async function route() {
  const hash = location.hash || "#/services";
  const [path, qs] = hash.slice(1).split("?");
  const query = new URLSearchParams(qs || "");
  const parts = path.split("/").filter(Boolean);
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("current", a.getAttribute("href") === "#/" + (parts[0] === "service" ? "services" : parts[0] === "session" ? "sessions" : parts[0]));
  }
  const m = main();
  try {
    let nodes;
    switch (parts[0]) {
      case "service": nodes = await pageService(parts[1]); break;
      case "sessions": nodes = await pageSessions(query); break;
      case "session": nodes = await pageSession(parts[1]); break;
      case "contacts": nodes = await pageContacts(query); break;
      case "health": nodes = await pageHealth(); break;
      default: nodes = await pageServices();
    }
    m.replaceChildren(...nodes);
    m.setAttribute("data-page", parts[0] || "services");
  } catch (err) {
    m.replaceChildren(h("p", { class: "error" }, "Could not load this page: " + err.message));
    m.setAttribute("data-page", "error");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("reveal");
  box.checked = sessionStorage.getItem("maskd-reveal") === "1";
  box.addEventListener("change", () => {
    sessionStorage.setItem("maskd-reveal", box.checked ? "1" : "0");
    route();
  });
  window.addEventListener("hashchange", route);
  route();
});
