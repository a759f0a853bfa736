// The operator console: accounts (search, create, plan, status, trial),
// keys (create with cap, allowlist, fallback, expiry and limits; the new
// key shown once; revoke), top-ups with multipliers, adjustments, an
// account's ledger (paged), usage by model and day, the models and prices
// in force, and this node's live rates. Reads and writes only the admin
// API on this listener, with the token kept in this tab's sessionStorage.
"use strict";

(() => {
  const { $, el, fillRows, usd, int, when, api, barChart, lastDays, copyButton } = Tollgate;
  const SLOT = "tollgate.console.token";
  const PAGE = 50;
  let accountsAfter = null;
  let ledgerBefore = null;
  let current = null;
  let lastLive = null;
  let liveTimer = null;

  const token = () => sessionStorage.getItem(SLOT);
  const call = (path, init) => api(path, token(), init);

  function fail(e) {
    if (e && e.status === 401) {
      signOut();
      $("login-error").textContent = "The admin token was refused (401).";
      return;
    }
    $("console-error").textContent = e ? e.message : "";
  }

  function show(on) {
    $("login").hidden = on;
    $("console").hidden = !on;
    $("signout").hidden = !on;
  }

  async function signIn(event) {
    event.preventDefault();
    const candidate = $("token-input").value.trim();
    $("login-error").textContent = "";
    try {
      await api("/admin/v1/plans", candidate);
    } catch (e) {
      $("login-error").textContent = e.status === 401 ? "This token is not valid (401)." : e.message;
      return;
    }
    sessionStorage.setItem(SLOT, candidate);
    $("token-input").value = "";
    show(true);
    await start().catch(fail);
  }

  function signOut() {
    sessionStorage.removeItem(SLOT);
    forgetNewKey();
    if (liveTimer) clearInterval(liveTimer);
    liveTimer = null;
    show(false);
  }

  function tab(name) {
    for (const b of document.querySelectorAll("nav.tabs button")) {
      if (b.dataset.tab === name) b.setAttribute("aria-current", "page"); else b.removeAttribute("aria-current");
    }
    for (const p of document.querySelectorAll("[data-panel]")) p.hidden = p.dataset.panel !== name;
    $("console-error").textContent = "";
    if (name === "usage") loadUsage().catch(fail);
    if (name === "models") loadModels().catch(fail);
    if (name === "live") startLive();
  }

  /** A datetime-local input's value as RFC 3339 (UTC), or null. */
  function timeOf(input) {
    return input.value ? new Date(input.value).toISOString() : null;
  }

  function localInput(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  }

  async function loadPlans() {
    const plans = (await call("/admin/v1/plans")).data.map((p) => p.name);
    for (const select of [$("new-plan"), $("acct-plan")]) {
      select.replaceChildren(...plans.map((p) => el("option", p, { value: p })));
    }
  }

  async function loadAccounts(after) {
    const q = new URLSearchParams({ limit: String(PAGE) });
    const search = $("search").value.trim();
    if (search) q.set("search", search);
    if (after) q.set("after", String(after));
    const page = await call(`/admin/v1/accounts?${q}`);
    const rows = page.data.map((a) => {
      const open = el("button", "Open", { type: "button", class: "quiet", "aria-label": `Open account ${a.name}` });
      open.addEventListener("click", () => openAccount(a.id).catch(fail));
      return [a.id, a.name, a.plan, a.status, a.trial_ends_at ? when(a.trial_ends_at) : "–", open];
    });
    const tbody = $("accounts");
    if (!after) tbody.replaceChildren();
    const holder = el("tbody");
    fillRows(holder, rows);
    tbody.append(...holder.children);
    accountsAfter = page.next_after;
    $("more-accounts").hidden = !accountsAfter;
  }

  async function createAccount(event) {
    event.preventDefault();
    const body = { name: $("new-name").value.trim(), plan: $("new-plan").value };
    const trial = timeOf($("new-trial"));
    if (trial) body.trial_ends_at = trial;
    const made = await call("/admin/v1/accounts", { method: "POST", json: body });
    $("create-status").textContent = `Account ${made.name} created (id ${made.id}).`;
    $("create-form").reset();
    await loadAccounts(null);
    await openAccount(made.id);
  }

  async function openAccount(id) {
    const a = await call(`/admin/v1/accounts/${id}`);
    current = a;
    $("account").hidden = false;
    $("account-title").textContent = `Account ${a.name} (id ${a.id})`;
    $("acct-balance").textContent = usd(a.balance_nano_usd);
    $("acct-credits").textContent = int(a.balance_credits);
    $("acct-held").textContent = usd(a.held_nano_usd);
    $("acct-spent").textContent = usd(a.spent_nano_usd);
    $("acct-plan").value = a.plan;
    $("acct-status").value = a.status;
    $("acct-trial").value = localInput(a.trial_ends_at);
    for (const s of ["patch-status", "topup-status", "adjust-status", "key-error"]) $(s).textContent = "";
    forgetNewKey();
    await Promise.all([loadKeys(), loadLedger(null)]);
    $("account-title").scrollIntoView({ block: "start" });
    $("account-title").focus({ preventScroll: true });
  }

  async function patchAccount(event) {
    event.preventDefault();
    const body = { plan: $("acct-plan").value, status: $("acct-status").value, trial_ends_at: timeOf($("acct-trial")) };
    await call(`/admin/v1/accounts/${current.id}`, { method: "PATCH", json: body });
    $("patch-status").textContent = "Saved.";
    await openAccount(current.id);
    await loadAccounts(null);
  }

  const idempotency = () => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`);

  async function topUp(event) {
    event.preventDefault();
    const multiplier = Number($("topup-multiplier").value);
    const body = { amount_usd: $("topup-amount").value.trim(), multiplier, idempotency_key: idempotency() };
    const done = await call(`/admin/v1/accounts/${current.id}/topups`, { method: "POST", json: body });
    $("topup-status").textContent = `Added ${usd(done.credited_nano_usd)} of list value at ${multiplier}×; balance ${usd(done.balance_nano_usd)}.`;
    $("topup-form").reset();
    const keep = $("topup-status").textContent;
    await openAccount(current.id);
    $("topup-status").textContent = keep;
  }

  async function adjust(event) {
    event.preventDefault();
    const body = { amount_usd: $("adjust-amount").value.trim(), idempotency_key: idempotency() };
    await call(`/admin/v1/accounts/${current.id}/adjustments`, { method: "POST", json: body });
    $("adjust-form").reset();
    await openAccount(current.id);
    $("adjust-status").textContent = "Adjusted.";
  }

  async function loadKeys() {
    const keys = (await call(`/admin/v1/accounts/${current.id}/keys`)).data;
    const rows = keys.map((k) => {
      let action = "–";
      if (k.status === "active") {
        action = el("button", "Revoke", { type: "button", class: "danger", "aria-label": `Revoke key ${k.name}` });
        action.addEventListener("click", () => revoke(k).catch(fail));
      }
      const cap = k.spend_cap_nano_usd === null ? "none" : usd(k.spend_cap_nano_usd);
      return [k.id, k.name, `${k.prefix}…`, k.status, usd(k.spend_nano_usd), cap, k.models ? k.models.join(", ") : "plan's", limitsOf(k.limits), k.expires_at ? when(k.expires_at) : "never", action];
    });
    fillRows($("keys"), rows.length ? rows : [["No keys yet", "", "", "", "", "", "", "", "", ""]], [4, 5]);
  }

  /** The key's own limit overrides, in short ("rpm 60, day 500"), or the plan's. */
  function limitsOf(limits) {
    const o = (limits && limits.overrides) || {};
    const names = { rpm: "rpm", rph: "rph", daily_messages: "day", input_tpm: "input tpm", concurrent: "at once" };
    const set = Object.entries(names).filter(([f]) => o[f] !== null && o[f] !== undefined).map(([f, n]) => `${n} ${o[f]}`);
    return set.length ? set.join(", ") : "plan's";
  }

  async function createKey(event) {
    event.preventDefault();
    $("key-error").textContent = "";
    const body = { name: $("key-name").value.trim() };
    const cap = $("key-cap").value.trim();
    if (cap) body.spend_cap_usd = cap;
    const models = $("key-models").value.split(",").map((s) => s.trim()).filter(Boolean);
    if (models.length) body.models = models;
    const fallback = $("key-fallback").value.trim();
    if (fallback) body.fallback_model = fallback;
    const expires = timeOf($("key-expires"));
    if (expires) body.expires_at = expires;
    const limits = {};
    for (const [field, id] of [["rpm", "key-rpm"], ["daily_messages", "key-daily"], ["rph", "key-rph"], ["input_tpm", "key-tpm"], ["concurrent", "key-concurrent"]]) {
      const value = $(id).value.trim();
      if (value) limits[field] = Number(value);
    }
    if (Object.keys(limits).length) body.limits = limits;
    let made;
    try {
      made = await call(`/admin/v1/accounts/${current.id}/keys`, { method: "POST", json: body });
    } catch (e) {
      $("key-error").textContent = e.message;
      return;
    }
    $("key-form").reset();
    const code = $("new-key-value");
    code.textContent = made.key;
    $("new-key-copy").replaceChildren(copyButton("Copy the key", code, $("new-key-status")));
    $("new-key-status").textContent = "";
    $("new-key").hidden = false;
    $("new-key-title").focus();
    await loadKeys();
  }

  function forgetNewKey() {
    $("new-key-value").textContent = "";
    $("new-key").hidden = true;
  }

  async function revoke(k) {
    if (!window.confirm(`Revoke key ${k.name} (${k.prefix}…)? Calls with it will get 401.`)) return;
    await call(`/admin/v1/keys/${k.id}`, { method: "DELETE" });
    await loadKeys();
  }

  async function loadLedger(before) {
    const q = new URLSearchParams({ account: String(current.id), limit: String(PAGE), order: "newest" });
    if (before) q.set("before", String(before));
    $("more-ledger").disabled = true;
    let page;
    try {
      page = await call(`/admin/v1/ledger?${q}`);
    } finally {
      $("more-ledger").disabled = false;
    }
    const rows = page.entries.map((e) => [
      when(e.at), e.kind, usd(e.amount_nano_usd), usd(e.paid_nano_usd), e.key_id, e.model, int(e.input_tokens), int(e.output_tokens), e.request_id,
    ]);
    const tbody = $("ledger");
    if (!before) tbody.replaceChildren();
    const holder = el("tbody");
    fillRows(holder, rows, [2, 3, 6, 7]);
    tbody.append(...holder.children);
    if (!tbody.children.length) fillRows(tbody, [["No entries yet", "", "", "", "", "", "", "", ""]]);
    ledgerBefore = page.next_before;
    $("more-ledger").hidden = !ledgerBefore;
  }

  async function loadUsage(event) {
    if (event) event.preventDefault();
    const days = Number($("usage-days").value);
    const q = new URLSearchParams({ days: String(days) });
    const account = $("usage-account").value.trim();
    if (account) q.set("account", account);
    const view = await call(`/admin/v1/usage?${q}`);
    const perDay = new Map();
    for (const r of view.usage) perDay.set(r.day, (perDay.get(r.day) || 0) + r.cost_nano_usd);
    barChart($("usage-chart"), lastDays(days, new Date()).map((d) => [d, perDay.get(d) || 0]), usd);
    const rows = view.usage.slice().reverse().map((r) => [r.day, r.model, int(r.requests), int(r.input_tokens), int(r.output_tokens), int(r.cached_tokens), usd(r.cost_nano_usd)]);
    fillRows($("usage"), rows.length ? rows : [["No usage in these days", "", "", "", "", "", ""]], [2, 3, 4, 5, 6]);
  }

  /** Nano-USD per token (exact decimal text) as dollars per million tokens. */
  function perMillion(nanoPerToken) {
    const text = String(nanoPerToken);
    const [whole, frac = ""] = text.split(".");
    // x nano-USD a token is x * 10^6 nano-USD a million tokens.
    return usd(BigInt(whole + frac.padEnd(6, "0").slice(0, 6)));
  }

  async function loadModels() {
    const view = await call("/admin/v1/models");
    const rows = view.models.map((m) => {
      const p = m.price_nano_usd;
      if (!p) return [m.id, m.kind, m.status, "–", "–", "–", "–", "–", "–"];
      return [m.id, m.kind, m.status, perMillion(p.input), perMillion(p.output), perMillion(p.cache_read), perMillion(p.cache_write), usd(p.per_image), usd(p.per_request)];
    });
    fillRows($("models"), rows, [3, 4, 5, 6, 7, 8]);
  }

  async function pollLive() {
    const s = await call("/admin/v1/stats");
    const now = performance.now();
    if (lastLive) {
      const rate = ((s.requests_total - lastLive.total) * 1000) / (now - lastLive.at);
      $("live-rate").textContent = rate.toFixed(1);
    }
    lastLive = { total: s.requests_total, at: now };
    $("live-total").textContent = int(s.requests_total);
    $("live-errors").textContent = int(s.server_errors_total);
    $("live-inflight").textContent = int(s.in_flight);
    const rows = s.errors.map((e) => [e.code, e.status, int(e.count)]);
    fillRows($("live-codes"), rows.length ? rows : [["No refusals or errors yet", "", ""]], [1, 2]);
  }

  function startLive() {
    pollLive().catch(fail);
    if (!liveTimer) liveTimer = setInterval(() => {
      if (!$("tab-live").hidden) pollLive().catch(fail);
    }, 2000);
  }

  async function start() {
    await loadPlans();
    await loadAccounts(null);
  }

  const guard = (f) => (event) => f(event).catch(fail);

  document.addEventListener("DOMContentLoaded", () => {
    $("token-form").addEventListener("submit", signIn);
    $("signout").addEventListener("click", signOut);
    for (const b of document.querySelectorAll("nav.tabs button")) b.addEventListener("click", () => tab(b.dataset.tab));
    $("search-form").addEventListener("submit", guard(async (e) => { e.preventDefault(); await loadAccounts(null); }));
    $("more-accounts").addEventListener("click", () => loadAccounts(accountsAfter).catch(fail));
    $("create-form").addEventListener("submit", guard(createAccount));
    $("patch-form").addEventListener("submit", guard(patchAccount));
    $("topup-form").addEventListener("submit", guard(topUp));
    $("adjust-form").addEventListener("submit", guard(adjust));
    $("key-form").addEventListener("submit", guard(createKey));
    $("new-key-done").addEventListener("click", forgetNewKey);
    $("more-ledger").addEventListener("click", () => loadLedger(ledgerBefore).catch(fail));
    $("usage-form").addEventListener("submit", guard(loadUsage));
    if (token()) {
      show(true);
      start().catch(fail);
    }
  });
})();
