// Tollgate's dashboards: what the customer page and the operator console
// share. Every page is static; the data comes from the gateway's own JSON
// APIs, called with a credential kept in this tab's sessionStorage only.
"use strict";

const Tollgate = (() => {
  /** The element with this id. */
  const $ = (id) => document.getElementById(id);

  /** A new element with text (never HTML: nothing from an API is parsed as markup). */
  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    return node;
  }

  /** Replaces a table body's rows; each row is a list of cells (text, or a node). */
  function fillRows(tbody, rows, numeric) {
    tbody.replaceChildren();
    for (const row of rows) {
      const tr = el("tr");
      row.forEach((cell, i) => {
        const td = el("td");
        if (cell instanceof Node) td.append(cell); else td.textContent = cell === null || cell === undefined ? "–" : String(cell);
        if (numeric && numeric.includes(i)) td.className = "num";
        tr.append(td);
      });
      tbody.append(tr);
    }
  }

  /** Dollars from integer nano-USD, exactly (no floating point on money). */
  function usd(nano) {
    if (nano === null || nano === undefined) return "–";
    let n = BigInt(nano);
    const sign = n < 0n ? "-" : "";
    if (n < 0n) n = -n;
    const whole = n / 1000000000n;
    const frac = (n % 1000000000n).toString().padStart(9, "0");
    // Cents always; more digits only when they are not zero (token prices are small).
    let shown = frac.slice(0, 2);
    const rest = frac.slice(2).replace(/0+$/, "");
    if (rest) shown += rest.slice(0, 4);
    return `${sign}$${whole.toLocaleString("en-US")}.${shown}`;
  }

  const int = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));

  /** An ISO time, or Unix milliseconds, as local date and time. */
  function when(t) {
    if (t === null || t === undefined) return "–";
    const d = typeof t === "number" ? new Date(t) : new Date(t);
    return isNaN(d) ? String(t) : d.toLocaleString();
  }

  /** The message of an error body in any of the gateway's formats. */
  function message(body, status) {
    if (body && typeof body === "object") {
      const e = body.error;
      if (e && typeof e === "object" && e.message) return e.message;
      if (typeof e === "string") return e;
      if (body.detail) return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      if (body.message) return body.message;
    }
    return `HTTP ${status}`;
  }

  class ApiError extends Error {
    constructor(status, text) { super(text); this.status = status; }
  }

  /** Calls a JSON API with a bearer credential; the parsed body, or an ApiError. */
  async function api(path, credential, init) {
    const opts = Object.assign({ cache: "no-store", credentials: "omit" }, init || {});
    opts.headers = Object.assign({ Authorization: `Bearer ${credential}` }, (init && init.headers) || {});
    if (opts.json !== undefined) {
      opts.body = JSON.stringify(opts.json);
      opts.headers["Content-Type"] = "application/json";
      delete opts.json;
    }
    const r = await fetch(path, opts);
    const text = await r.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
    if (!r.ok) throw new ApiError(r.status, message(body, r.status));
    return body;
  }

  /** A bar chart of [label, value] pairs as SVG, drawn with DOM calls (no inline style). */
  function barChart(container, points, format) {
    const NS = "http://www.w3.org/2000/svg";
    const w = 600, h = 180, pad = 24;
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("class", "chart");
    svg.setAttribute("role", "img");
    const max = Math.max(1, ...points.map((p) => Number(p[1])));
    const total = points.reduce((s, p) => s + Number(p[1]), 0);
    const title = document.createElementNS(NS, "title");
    title.textContent = `${points.length} days, ${format(total)} in all, at most ${format(max)} a day`;
    svg.append(title);
    const base = document.createElementNS(NS, "line");
    for (const [k, v] of Object.entries({ x1: pad, x2: w, y1: h - pad, y2: h - pad })) base.setAttribute(k, v);
    svg.append(base);
    const slot = (w - pad) / Math.max(points.length, 1);
    points.forEach(([label, value], i) => {
      const bh = Math.round(((h - 2 * pad) * Number(value)) / max);
      const bar = document.createElementNS(NS, "rect");
      bar.setAttribute("class", "bar");
      bar.setAttribute("x", String(pad + i * slot + 1));
      bar.setAttribute("width", String(Math.max(slot - 2, 1)));
      bar.setAttribute("y", String(h - pad - bh));
      bar.setAttribute("height", String(bh));
      const tip = document.createElementNS(NS, "title");
      tip.textContent = `${label}: ${format(value)}`;
      bar.append(tip);
      svg.append(bar);
      // A label a week, counted back from the last day, so none overlap.
      if ((points.length - 1 - i) % 7 === 0) {
        const t = document.createElementNS(NS, "text");
        t.setAttribute("x", String(pad + i * slot));
        t.setAttribute("y", String(h - 6));
        t.textContent = label.slice(5);
        svg.append(t);
      }
    });
    const top = document.createElementNS(NS, "text");
    top.setAttribute("x", "0");
    top.setAttribute("y", "12");
    top.textContent = format(max);
    svg.append(top);
    container.replaceChildren(svg);
  }

  /** The last `days` UTC days, oldest first, as YYYY-MM-DD. */
  function lastDays(days, now) {
    const out = [];
    const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
    for (let i = days - 1; i >= 0; i--) out.push(new Date(today - i * 86400000).toISOString().slice(0, 10));
    return out;
  }

  /** Copies a node's text to the clipboard, saying so in `status`. */
  function copyButton(label, source, status) {
    const b = el("button", label, { type: "button", class: "quiet" });
    b.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(source.textContent);
        status.textContent = "Copied.";
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents(source);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        status.textContent = "Selected: press Ctrl+C to copy.";
      }
    });
    return b;
  }

  return { $, el, fillRows, usd, int, when, api, ApiError, barChart, lastDays, copyButton };
})();
