// Shoal's web view: draws /api/state, and draws it again on each of the swarm's events
// (/api/events, server-sent). Plain DOM, no framework, nothing from the network.
"use strict";

const $ = (id) => document.getElementById(id);
let picked = null; // {kind: "service"|"node", id, label}
let fetching = false;
let again = false;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else if (k === "onclick") node.onclick = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c !== null && c !== undefined) node.append(c);
  }
  return node;
}

function taskName(t) {
  return t.slot > 0 ? `${t.service}.${t.slot}` : t.service;
}

function ago(ms) {
  if (!ms) return "";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}

function drawServices(view) {
  const body = $("services").tBodies[0];
  body.replaceChildren(...view.services.map((s) => {
    let update = "";
    if (s.update) {
      const done = s.desired > 0 ? Math.round((100 * s.running) / s.desired) : 0;
      update = el("span", {}, s.update.state.replace("_", " "));
      if (s.update.state === "updating" || s.update.state === "rollback_started") {
        const fill = el("span");
        fill.style.width = `${done}%`; // through the CSSOM: the page's policy forbids inline styles
        update.append(el("span", { class: "bar", title: s.update.message }, fill));
      }
    }
    const row = el("tr", {
      class: "service" + (picked && picked.kind === "service" && picked.id === s.id ? " picked" : ""),
      "data-service": s.name,
      onclick: () => pick({ kind: "service", id: s.id, label: s.name }),
    },
      el("td", {}, s.name),
      el("td", {}, s.mode),
      el("td", {}, `${s.running}/${s.desired}`),
      el("td", {}, s.image),
      el("td", {}, update));
    return row;
  }));
}

function drawNodes(view) {
  const byNode = new Map(view.nodes.map((n) => [n.id, []]));
  for (const t of view.tasks) {
    if (byNode.has(t.node_id)) byNode.get(t.node_id).push(t);
  }
  $("nodes").replaceChildren(...view.nodes.map((n) => {
    const tasks = byNode.get(n.id).map((t) => el("div", {
      class: `task ${t.state}`,
      "data-task": t.id,
      "data-service": t.service,
      "data-state": t.state,
      "data-since": String(t.since_ms),
      title: t.err || t.message,
    },
      el("span", { class: "state" }, `${t.state} ${ago(t.since_ms)}`),
      el("span", { class: "name" }, taskName(t)),
      el("span", { class: "image" }, t.image),
      t.err ? el("span", { class: "note" }, t.err)
        : (t.state === "preparing" && t.message && t.message !== "preparing")
          ? el("span", { class: "note" }, t.message) : null));
    const role = n.role + (n.leader ? " ★ leader" : "");
    return el("div", {
      class: `node ${n.state} ${n.availability}` + (picked && picked.kind === "node" && picked.id === n.id ? " picked" : ""),
      "data-node": n.name,
    },
      el("h3", { onclick: () => pick({ kind: "node", id: n.id, label: n.name }) },
        n.name,
        el("span", { class: "meta" }, `${role} · ${n.state} · ${n.availability}`)),
      el("div", { class: "tasks" }, ...tasks));
  }));
}

async function refresh() {
  if (fetching) {
    again = true;
    return;
  }
  fetching = true;
  try {
    const reply = await fetch("/api/state", { cache: "no-store" });
    const body = await reply.json();
    if (!reply.ok) throw new Error(body.message || reply.statusText);
    const running = body.tasks.filter((t) => t.state === "running").length;
    $("summary").textContent =
      `${body.nodes.length} nodes · ${body.services.length} services · ${running} tasks running`;
    drawServices(body);
    drawNodes(body);
    $("error").hidden = true;
    document.body.dataset.ready = "1";
  } catch (e) {
    $("error").textContent = `Cannot read the swarm: ${e.message}`;
    $("error").hidden = false;
  } finally {
    fetching = false;
    if (again) {
      again = false;
      refresh();
    }
  }
}

async function pick(what) {
  picked = what;
  refresh();
  $("logs-title").textContent = `Logs of ${what.kind} ${what.label}`;
  const query = `${what.kind}=${encodeURIComponent(what.id)}&tail=50`;
  try {
    const reply = await fetch(`/api/logs?${query}`, { cache: "no-store" });
    const body = await reply.json();
    if (!reply.ok) throw new Error(body.message || reply.statusText);
    const lines = body.lines.map((l) => el("div", { class: l.stderr ? "stderr" : "" },
      el("span", { class: "ctx" }, `${l.task}@${l.node} `), l.text));
    const warnings = body.warnings.map((w) => el("div", { class: "stderr" }, `(${w})`));
    $("logs").replaceChildren(...lines, ...warnings);
    if (lines.length === 0 && warnings.length === 0) $("logs").textContent = "(no lines)";
  } catch (e) {
    $("logs").textContent = `(cannot read the logs: ${e.message})`;
  }
}

function listen() {
  const events = new EventSource("/api/events");
  let pending = null;
  events.onopen = () => {
    $("live").textContent = "live";
    $("live").className = "on";
    document.body.dataset.live = "1";
    refresh();
  };
  events.addEventListener("change", () => {
    // A burst of events (a service of many tasks) is one redraw.
    if (pending === null) {
      pending = setTimeout(() => {
        pending = null;
        refresh();
      }, 50);
    }
  });
  events.onerror = () => {
    $("live").textContent = "reconnecting…";
    $("live").className = "off";
    document.body.dataset.live = "0";
  };
}

refresh();
listen();
// The "ago" times move on even when nothing happens.
setInterval(refresh, 10000);
