// geobooth dashboard: refreshes the server-rendered page from the API every
// second, animates the lease countdowns, and offers grant/revoke/move behind
// the API token with a confirmation step. No framework, no external files.
"use strict";

(function () {
  const member = document.body.dataset.member;
  const sections = (document.body.dataset.sections || "").split(",").filter(Boolean);
  let tickets = [];
  let peers = [];
  let skew = 0; // server clock minus ours, from the Date header

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function ago(iso) {
    if (!iso) return "-";
    const s = Math.max(0, Math.round((Date.now() + skew - Date.parse(iso)) / 1000));
    if (s < 60) return s + "s ago";
    if (s < 3600) return Math.floor(s / 60) + "m" + (s % 60) + "s ago";
    return Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m ago";
  }

  function remaining(t) {
    if (!t.owner || !t.expires) return 0;
    return Math.max(0, (Date.parse(t.expires) - (Date.now() + skew)) / 1000);
  }

  // With read_token the page comes without data: every read carries the
  // token (kept for this tab only), asked for once.
  const readToken = document.body.dataset.readToken === "1";
  let asking = false;

  function askToken() {
    if (asking) return;
    asking = true;
    const dlg = document.getElementById("login");
    const input = document.getElementById("login-token");
    input.value = "";
    dlg.onclose = () => {
      asking = false;
      if (dlg.returnValue === "ok") {
        sessionStorage.setItem("geobooth-token", input.value);
        refresh();
      }
    };
    dlg.showModal();
  }

  async function get(path) {
    const headers = {};
    const token = sessionStorage.getItem("geobooth-token");
    if (readToken && token) headers["Authorization"] = "Bearer " + token;
    const r = await fetch(path, { cache: "no-store", headers });
    const date = r.headers.get("Date");
    if (date) skew = Date.parse(date) - Date.now();
    if (r.status === 401 && readToken) {
      askToken();
      throw new Error("the API token is needed to read");
    }
    if (!r.ok) throw new Error(path + ": " + r.status);
    return r.json();
  }

  function leaseCell(t) {
    const td = el("td", { class: "lease" });
    const m = el("meter", { class: "bar", min: 0, max: 100, low: 25, optimum: 100 });
    const c = el("span", { class: "countdown" });
    td.append(m, " ", c);
    paintLease(td, t);
    return td;
  }

  function paintLease(td, t) {
    const m = td.querySelector("meter");
    const c = td.querySelector(".countdown");
    if (!t.owner) { m.value = 0; c.textContent = "-"; return; }
    if (t.mode === "manual") { m.value = 100; c.textContent = "no expiry"; return; }
    const r = remaining(t);
    m.value = t.expire_s > 0 ? Math.min(100, 100 * r / t.expire_s) : 0;
    c.textContent = r.toFixed(1) + "s";
  }

  function renderTickets() {
    const body = document.querySelector("#tickets tbody");
    body.replaceChildren(...tickets.map(t => {
      const actions = el("td", { class: "actions" });
      if (t.owner) {
        actions.append(el("button", { type: "button", onclick: () => act("move", t) }, "move"),
          el("button", { type: "button", onclick: () => act("revoke", t) }, "revoke"));
      } else {
        actions.append(el("button", { type: "button", onclick: () => act("grant", t) }, "grant"));
      }
      return el("tr", { "data-ticket": t.name },
        el("td", { class: "name" }, t.name),
        el("td", { class: "owner" }, t.owner || "-"),
        el("td", { class: "term" }, t.term),
        el("td", { class: "mode" }, t.mode),
        leaseCell(t),
        el("td", { class: "state state-" + t.state.split(" ")[0] }, t.state),
        el("td", { class: "change" }, ago(t.last_change), el("br"), el("small", {}, t.reason || "")),
        actions);
    }));
  }

  function renderPeers() {
    const body = document.querySelector("#members tbody");
    body.replaceChildren(...peers.map(p => el("tr", { "data-member": p.name, class: p.config_mismatch || p.zones_mismatch ? "mismatch" : "" },
      el("td", { class: "name" }, p.name),
      el("td", {}, p.role),
      el("td", { class: "status status-" + p.status }, p.status),
      el("td", {}, ago(p.last_heard)),
      el("td", {}, Math.round(p.clock_offset_ms) + " ms"),
      el("td", {}, p.version || "-"),
      el("td", {}, p.wire || "-"),
      el("td", {}, p.config_mismatch ? el("b", {}, "differs") : (p.config_digest || "-")),
      el("td", {}, p.zones_mismatch ? el("b", {}, "differs") : (p.zones_digest || "-")))));
  }

  function renderEvents(events) {
    const ol = document.getElementById("events");
    ol.replaceChildren(...events.slice(0, 30).map(e => el("li", { class: "kind-" + e.kind.split(" ")[0] },
      el("time", {}, new Date(e.time).toLocaleTimeString()), " ", el("b", {}, e.ticket), " ", e.kind, " ",
      el("span", { class: "term" }, "term " + e.term), e.owner ? " owner " + e.owner : "", " ",
      el("small", {}, e.reason))));
  }

  // Replication: per volume, the role and disk state at this site and at
  // each peer, the lag in bytes and seconds with a sparkline of the last
  // two minutes, and the resync progress.
  const lagHistory = {}; // "volume/peer" -> recent lag_bytes samples
  const SVGNS = "http://www.w3.org/2000/svg";

  function sparkline(samples) {
    const w = 120, h = 24;
    const svg = document.createElementNS(SVGNS, "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("class", "spark");
    svg.setAttribute("role", "img");
    const max = Math.max(1, ...samples);
    svg.setAttribute("aria-label", "lag, last " + samples.length + " samples, peak " + fmtBytes(max));
    const pts = samples.map((v, i) => `${(i * w / Math.max(1, samples.length - 1)).toFixed(1)},${(h - 1 - v * (h - 2) / max).toFixed(1)}`);
    const line = document.createElementNS(SVGNS, "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.append(line);
    return svg;
  }

  function fmtBytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1 << 20) return (n / 1024).toFixed(1) + " KiB";
    if (n < 1 << 30) return (n / (1 << 20)).toFixed(1) + " MiB";
    return (n / (1 << 30)).toFixed(2) + " GiB";
  }

  function renderReplication(vols) {
    const table = el("table", { id: "volumes" },
      el("thead", {}, el("tr", {}, ...["volume", "ticket", "here", "peer", "link", "peer data", "lag", "lag history", "resync"].map(h => el("th", {}, h)))));
    const body = el("tbody");
    for (const v of vols) {
      const peers = v.peers.length ? v.peers : [null];
      peers.forEach((p, i) => {
        const here = el("td", { class: "disk disk-" + v.disk }, `${v.role} · ${v.disk}`);
        if (v.split_brains > 0) here.append(el("br"), el("b", { class: "split" }, `split brain ×${v.split_brains}`));
        if (v.verify) {
          // The running (or last) online verify.
          const j = v.verify, pct = Math.floor(100 * j.checked_blocks / Math.max(j.total_blocks, 1));
          here.append(el("br"), j.running
            ? el("span", { class: "verify" }, el("progress", { max: j.total_blocks, value: j.checked_blocks }), ` verify vs ${j.peer}: ${pct}%, ${j.differing_blocks} different`)
            : el("small", { class: j.error || (j.differing_blocks > 0 && !j.resynced) ? "bad" : "ok" },
              j.error ? `verify vs ${j.peer} failed: ${j.error}` : `verify vs ${j.peer}: ${j.differing_blocks} different${j.resynced ? ", resynced" : ""}`));
        }
        if (!p) {
          body.append(el("tr", { "data-volume": v.volume }, el("td", {}, v.volume), el("td", {}, v.ticket || "-"), here,
            el("td", { colSpan: 6 }, "no peer")));
          return;
        }
        const key = v.volume + "/" + p.name;
        const hist = (lagHistory[key] = (lagHistory[key] || []).concat([p.lag_bytes]).slice(-120));
        const resync = el("td", { class: "resync" });
        if (p.resync_total_bytes > 0) {
          const done = p.resync_total_bytes - p.resync_remaining_bytes;
          resync.append(el("progress", { max: p.resync_total_bytes, value: done }),
            " " + Math.floor(100 * done / p.resync_total_bytes) + "%");
        } else resync.append("-");
        body.append(el("tr", { "data-volume": v.volume, "data-peer": p.name },
          el("td", { class: "name" }, i === 0 ? v.volume : ""),
          el("td", {}, i === 0 ? (v.ticket || "-") : ""),
          i === 0 ? here : el("td"),
          el("td", {}, p.name),
          el("td", { class: "link link-" + p.state }, p.state, p.last_error ? el("br") : null, p.last_error ? el("small", {}, p.last_error) : null),
          el("td", { class: "disk disk-" + (p.peer_disk || "unknown") }, p.connected ? `${p.peer_role || "-"} · ${p.peer_disk || "-"}` : "-"),
          el("td", { class: "lag" }, `${fmtBytes(p.lag_bytes)} · ${p.lag_seconds.toFixed(2)}s`),
          el("td", {}, sparkline(hist)),
          resync));
      });
    }
    table.append(body);
    return table;
  }

  // DNS: per zone the serial and NOTIFY state; per failover name the
  // answer served now and why; the health matrix (target × vantage point)
  // with rise/fall progress.
  function renderDNS(st) {
    const box = el("div");
    for (const z of st.zones) {
      box.append(el("p", { class: "zone" }, el("b", {}, z.origin), ` serial ${z.serial} · served on ${st.listen}`,
        ...(z.notify || []).map(n => el("span", { class: n.result === "ok" ? "ok" : "bad" }, ` · NOTIFY ${n.target}: ${n.result}`)),
        z.update ? el("span", { class: z.update.result === "ok" ? "ok" : "bad" }, ` · UPDATE ${z.update.target}: ${z.update.result}`) : null));
      box.append(el("table", { id: "dns-names" },
        el("thead", {}, el("tr", {}, ...["name", "ticket", "answer now", "TTL", "why"].map(h => el("th", {}, h)))),
        el("tbody", {}, ...z.names.map(n => el("tr", { "data-name": n.name },
          el("td", { class: "name" }, n.name + " " + n.type),
          el("td", {}, n.ticket),
          el("td", { class: "answer" }, (n.targets || []).length ? n.targets.join(", ") : "(no data)"),
          el("td", {}, n.ttl),
          el("td", {}, el("small", {}, n.why)))))));
      const vantages = [...new Set((z.checks || []).flatMap(c => Object.keys(c.vantages || {})))].sort();
      if ((z.checks || []).length) {
        box.append(el("table", { class: "matrix", id: "dns-health" },
          el("thead", {}, el("tr", {}, el("th", {}, "site"), el("th", {}, "target"), el("th", {}, "state"),
            ...vantages.map(v => el("th", {}, "from " + v)), el("th", {}, "here"))),
          el("tbody", {}, ...z.checks.map(c => el("tr", { "data-target": c.target },
            el("td", {}, c.site), el("td", {}, c.target, el("br"), el("small", {}, c.check || "not checked")),
            el("td", { class: c.state }, c.state),
            ...vantages.map(v => el("td", { class: (c.vantages || {})[v] || "unknown" }, (c.vantages || {})[v] || "-")),
            el("td", {}, el("small", {}, (c.progress ? c.progress + " · " : "") + (c.local_result || "-"))))))));
      }
    }
    return box;
  }
  window.geoboothRender = Object.assign(window.geoboothRender || {}, { replication: renderReplication, dns: renderDNS });

  // Generic renderers for the optional sections: DNS and replication
  // status objects are shown as tables of their rows.
  function renderSection(name, data) {
    const box = document.getElementById(name);
    box.closest("section").hidden = false;
    const render = window.geoboothRender && window.geoboothRender[name];
    if (render) { box.replaceChildren(render(data, el)); return; }
    box.replaceChildren(el("pre", {}, JSON.stringify(data, null, 2)));
  }

  async function refresh() {
    try {
      const [ts, ps, evs] = await Promise.all([get("/api/v1/tickets"), get("/api/v1/peers"), get("/api/v1/events")]);
      tickets = ts; peers = ps;
      renderTickets(); renderPeers(); renderEvents(evs);
      for (const path of sections) {
        const name = path.split("/").pop();
        try { renderSection(name, await get(path)); } catch (e) { /* section not available */ }
      }
      document.getElementById("live").textContent = "live · " + new Date().toLocaleTimeString();
    } catch (e) {
      document.getElementById("live").textContent = "cannot reach " + member + ": " + e.message;
    }
  }

  function tick() {
    for (const row of document.querySelectorAll("#tickets tbody tr")) {
      const t = tickets.find(x => x.name === row.dataset.ticket);
      if (t) paintLease(row.querySelector("td.lease"), t);
    }
  }

  // Operator actions: a confirmation dialog that also asks for the token
  // (kept for this tab only) and, for grant and move, the site.
  function act(op, t) {
    const dlg = document.getElementById("confirm");
    const siteLabel = document.getElementById("site-label");
    const select = document.getElementById("site");
    const sites = peers.filter(p => p.role === "site" && p.name !== t.owner).map(p => p.name);
    siteLabel.hidden = op === "revoke";
    select.replaceChildren(...sites.map(s => el("option", { value: s }, s)));
    document.getElementById("confirm-text").textContent =
      op === "revoke" ? `Revoke ${t.name} from ${t.owner}? Its services stop there.`
        : op === "move" ? `Move ${t.name} from ${t.owner} to the site below? Services stop there first.`
          : `Grant ${t.name} to the site below?`;
    const token = document.getElementById("token");
    token.value = sessionStorage.getItem("geobooth-token") || "";
    dlg.onclose = async () => {
      if (dlg.returnValue !== "ok") return;
      sessionStorage.setItem("geobooth-token", token.value);
      const body = op === "revoke" ? {} : { site: select.value };
      const msg = document.getElementById("message");
      try {
        const r = await fetch(`/api/v1/tickets/${encodeURIComponent(t.name)}/${op}`, {
          method: "POST", headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token.value },
          body: JSON.stringify(body),
        });
        const res = await r.json();
        msg.className = r.ok ? "" : "error";
        msg.textContent = `${op} ${t.name}: ` + (r.ok ? (res.detail || "ok") : res.error + (res.detail ? " (" + res.detail + ")" : ""));
      } catch (e) {
        msg.className = "error";
        msg.textContent = `${op} ${t.name}: ${e.message}`;
      }
      refresh();
    };
    dlg.showModal();
  }

  refresh();
  setInterval(refresh, 1000);
  setInterval(tick, 200);
})();
