// The customer page: paste a key, see the account's balance, the key's cap,
// today's use against the plan, the rate limits, spend per day and per
// model, the last requests (each with its bill), and set-up snippets for
// the tools. Reads only the customer endpoints (`/v1/whoami`, `/v1/usage`,
// `/v1/usage/daily`, `/v1/requests`, `/v1/generation`).
"use strict";

(() => {
  const { $, el, fillRows, usd, int, when, api, barChart, lastDays, copyButton } = Tollgate;
  const SLOT = "tollgate.dashboard.key";
  const PAGE = 20;
  let older = null;

  const key = () => sessionStorage.getItem(SLOT);
  const get = (path) => api(path, key());

  function showBoard(on) {
    $("login").hidden = on;
    $("board").hidden = !on;
    $("forget").hidden = !on;
    if (!on) $("who").textContent = "";
  }

  async function open(event) {
    event.preventDefault();
    const input = $("key-input");
    const candidate = input.value.trim();
    $("login-error").textContent = "";
    if (!candidate) return;
    try {
      await api("/v1/whoami", candidate);
    } catch (e) {
      $("login-error").textContent = e.status === 401 ? "This key is not valid (401)." : e.message;
      return;
    }
    sessionStorage.setItem(SLOT, candidate);
    input.value = "";
    showBoard(true);
    await refresh();
  }

  function forget() {
    sessionStorage.removeItem(SLOT);
    showBoard(false);
    $("key-input").focus();
  }

  function showWhoami(w) {
    $("who").textContent = `${w.account.name} · key ${w.api_key.prefix}…`;
    $("balance-usd").textContent = usd(w.balance_nano_usd);
    $("balance-credits").textContent = int(w.balance_credits);
    $("plan").textContent = w.plan;
    $("spent-total").textContent = usd(w.total_spent_nano_usd);
    $("status").textContent = w.account.status;
    $("trial").textContent = w.account.trial_ends_at ? when(w.account.trial_ends_at) : "no trial";
    const k = w.api_key;
    $("key-name").textContent = k.name;
    $("key-prefix").textContent = `${k.prefix}…`;
    $("key-spent").textContent = usd(k.spend_nano_usd);
    $("key-cap").textContent = k.spend_cap_nano_usd === null ? "none" : usd(k.spend_cap_nano_usd);
    $("key-left").textContent =
      k.spend_cap_nano_usd === null ? "no cap" : usd(Math.max(0, k.spend_cap_nano_usd - k.spend_nano_usd));
    $("key-models").textContent = k.models && k.models.length ? k.models.join(", ") : "what the plan allows";
    $("key-expires").textContent = k.expires_at ? when(k.expires_at) : "never";

    const models = Object.entries(w.per_model || {}).sort((a, b) => b[1].spent_nano_usd - a[1].spent_nano_usd);
    fillRows(
      $("models"),
      models.map(([m, c]) => [m, int(c.requests), int(c.input_tokens), int(c.output_tokens), int(c.cached_tokens), usd(c.spent_nano_usd)]),
      [1, 2, 3, 4, 5],
    );
    if (!models.length) fillRows($("models"), [["No usage yet", "", "", "", "", ""]]);
  }

  function showUsage(u) {
    const limit = u.today.limit;
    $("today-used").textContent = int(u.today.used);
    const limited = limit !== null && limit !== undefined;
    $("today-limit").textContent = limited ? `of ${int(limit)} messages today` : "messages today (no daily limit)";
    const meter = $("today-meter");
    if (limited && limit > 0) {
      const pct = Math.min(100, Math.round((100 * u.today.used) / limit));
      meter.setAttribute("aria-valuemax", String(limit));
      meter.setAttribute("aria-valuenow", String(u.today.used));
      $("today-bar").style.width = `${pct}%`;
      meter.hidden = false;
    } else {
      meter.hidden = true;
    }
    $("month").textContent = `${int(u.month.requests)} requests, ${int(u.month.tokensIn)} tokens in, ${int(u.month.tokensOut)} out, ${usd(u.month.cost_nano_usd)}`;
    const limits = Object.entries(u.rate_limits || {});
    fillRows(
      $("limits"),
      limits.map(([name, l]) => [name, int(l.limit), int(l.remaining), `${l.reset_seconds} s`]),
      [1, 2, 3],
    );
    $("limits-none").hidden = limits.length > 0;
  }

  function showDaily(d) {
    const byDay = new Map((d.data || []).map((row) => [row.day, row.cost_nano_usd]));
    const points = lastDays(30, new Date()).map((day) => [day, byDay.get(day) || 0]);
    barChart($("chart"), points, usd);
  }

  function requestRow(r) {
    const look = el("button", r.id, { type: "button", class: "quiet", "aria-label": `Show the bill of request ${r.id}` });
    look.addEventListener("click", () => showGeneration(r.id).catch(failed));
    return [when(r.created_at), r.model, int(r.input_tokens), int(r.output_tokens), usd(r.cost_nano_usd), look];
  }

  /** A refresh's or a button's failure, said on the page. */
  function failed(e) {
    if (e && e.status === 401) {
      forget();
      $("login-error").textContent = "The key was refused (401): paste it again, or another one.";
    } else {
      $("refreshed").textContent = `Could not load: ${e ? e.message : "unknown error"}`;
    }
  }

  async function loadRequests(before) {
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (before) q.set("before", before);
    $("older").disabled = true;
    let page;
    try {
      page = await get(`/v1/requests?${q}`);
    } finally {
      $("older").disabled = false;
    }
    const rows = page.data.map(requestRow);
    const tbody = $("requests");
    if (!before) tbody.replaceChildren();
    const holder = el("tbody");
    fillRows(holder, rows, [2, 3, 4]);
    tbody.append(...holder.children);
    if (!tbody.children.length) fillRows(tbody, [["No requests yet", "", "", "", "", ""]]);
    older = page.has_more ? page.next_before : null;
    $("older").hidden = !older;
  }

  async function showGeneration(id) {
    const g = await get(`/v1/generation?id=${encodeURIComponent(id)}`);
    $("generation-id").textContent = g.id;
    const dl = $("generation-fields");
    dl.replaceChildren();
    const fields = [
      ["Model", g.model], ["Input tokens", int(g.input_tokens)], ["Output tokens", int(g.output_tokens)],
      ["Cached tokens", int(g.cached_tokens)], ["Cost", usd(g.cost_nano_usd)],
      ["Estimated", g.estimated ? "yes (the provider reported no usage)" : "no"], ["At", when(g.created_at)],
    ];
    for (const [k, v] of fields) dl.append(el("dt", k), el("dd", v));
    $("generation").hidden = false;
    $("generation-title").focus();
  }

  function snippet(title, text, status) {
    const box = el("div", null, { class: "snippet" });
    const code = el("code", text);
    const pre = el("pre");
    pre.append(code);
    box.append(el("h3", title), pre, copyButton(`Copy ${title}`, code, status));
    return box;
  }

  async function showSetup() {
    const setup = await (await fetch("/dashboard/setup.json", { cache: "no-store", credentials: "omit" })).json();
    const origin = window.location.origin;
    const base = (format) => {
      const m = setup.mounts.find((x) => x.formats.includes(format));
      return m ? origin + (m.prefix === "/" ? "" : m.prefix) : origin;
    };
    const model = (format) => setup.models[format] || "MODEL";
    const openai = base("openai"), anthropic = base("anthropic"), gemini = base("gemini");
    const responses = base("responses");
    const status = $("copy-status");
    const items = [
      ["Claude Code", `export ANTHROPIC_BASE_URL=${anthropic}\nexport ANTHROPIC_AUTH_TOKEN="$TOLLGATE_KEY"\nclaude --model ${model("anthropic")}`],
      ["Codex CLI (~/.codex/config.toml)", `model = "${model("responses")}"\nmodel_provider = "tollgate"\n\n[model_providers.tollgate]\nname = "Tollgate"\nbase_url = "${responses}/v1"\nenv_key = "TOLLGATE_KEY"\nwire_api = "responses"\nsupports_websockets = false`],
      ["Gemini CLI", `mkdir -p ~/.gemini && echo '{"security":{"auth":{"selectedType":"gemini-api-key"}}}' > ~/.gemini/settings.json\nexport GOOGLE_GEMINI_BASE_URL=${gemini}\nexport GEMINI_API_KEY="$TOLLGATE_KEY"\ngemini -m ${model("gemini")}`],
      ["OpenCode (opencode.json)", JSON.stringify({
        $schema: "https://opencode.ai/config.json",
        provider: { tollgate: { npm: "@ai-sdk/openai-compatible", name: "Tollgate", options: { baseURL: `${openai}/v1`, apiKey: "{env:TOLLGATE_KEY}" }, models: { [model("openai")]: {} } } },
      }, null, 2)],
      ["Cursor", `Settings → Models → OpenAI API Key: your key\nOverride OpenAI Base URL: ${openai}/v1\nAdd model: ${model("openai")}`],
      ["OpenAI SDK (Python)", `from openai import OpenAI\nimport os\nclient = OpenAI(base_url="${openai}/v1", api_key=os.environ["TOLLGATE_KEY"])\nprint(client.chat.completions.create(model="${model("openai")}", messages=[{"role": "user", "content": "Hello"}]).choices[0].message.content)`],
      ["Anthropic SDK (Python)", `import anthropic, os\nclient = anthropic.Anthropic(base_url="${anthropic}", api_key=os.environ["TOLLGATE_KEY"])\nprint(client.messages.create(model="${model("anthropic")}", max_tokens=256, messages=[{"role": "user", "content": "Hello"}]).content[0].text)`],
      ["Google Gen AI SDK (Python)", `from google import genai\nimport os\nclient = genai.Client(api_key=os.environ["TOLLGATE_KEY"], http_options={"base_url": "${gemini}"})\nprint(client.models.generate_content(model="${model("gemini")}", contents="Hello").text)`],
      ["curl", `curl ${openai}/v1/chat/completions \\\n  -H "Authorization: Bearer $TOLLGATE_KEY" -H "Content-Type: application/json" \\\n  -d '{"model": "${model("openai")}", "messages": [{"role": "user", "content": "Hello"}]}'`],
    ];
    $("setup").replaceChildren(...items.map(([t, s]) => snippet(t, s, status)));
  }

  async function refresh() {
    try {
      const [w, u, d] = await Promise.all([get("/v1/whoami"), get("/v1/usage"), get("/v1/usage/daily?days=30")]);
      showWhoami(w);
      showUsage(u);
      showDaily(d);
      await loadRequests(null);
      $("refreshed").textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      failed(e);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("key-form").addEventListener("submit", open);
    $("forget").addEventListener("click", forget);
    $("refresh").addEventListener("click", refresh);
    $("older").addEventListener("click", () => older && loadRequests(older).catch(failed));
    showSetup().catch(() => {});
    if (key()) {
      showBoard(true);
      refresh();
    }
  });
})();
