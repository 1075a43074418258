// keyledger console: a client of the public JSON API, same origin, bearer key from
// sessionStorage. No inline script or style (CSP default-src 'self'); every DOM write uses
// textContent, never innerHTML.
import uPlot from "/console/vendor/uplot-1.6.32.esm.js";

const STORAGE_KEY = "keyledger.console.key";
const PAGE_SIZE = 20;

const $ = (id) => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el;
};

const state = {
  me: null, // GET /whoami
  catalogue: [], // scope names
  cursors: [null], // cursor of each page seen; the last is the current page's
  key: null, // the key shown in details
  charts: new Map(), // element id -> uPlot
};

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function token() {
  return sessionStorage.getItem(STORAGE_KEY);
}

async function api(path, { method = "GET", body, headers = {}, key = token() } = {}) {
  const h = { Accept: "application/json", ...headers };
  if (key) h.Authorization = `Bearer ${key}`;
  if (body !== undefined) h["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (e) {
    throw new ApiError(0, { detail: `The server could not be reached (${e.message}).` });
  }
  const type = res.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await res.json().catch(() => null) : null;
  if (!res.ok) {
    if (res.status === 401 && key === token() && state.me) {
      // The signed-in key stopped working (revoked, expired): back to sign-in.
      signOut(data?.detail ? `Signed out: ${data.detail}` : "Signed out: the key was refused.");
    }
    throw new ApiError(res.status, data);
  }
  return { data, etag: res.headers.get("ETag") };
}

const orgPath = (rest = "") => `/organizations/${encodeURIComponent(state.me.org_id)}${rest}`;
const keyPath = (id, rest = "") => orgPath(`/api-keys/${encodeURIComponent(id)}${rest}`);
const holds = (scope) => !!state.me && state.me.scopes.includes(scope);

// ---------------------------------------------------------------- small helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else if (k in node && typeof v !== "string") node[k] = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function when(iso) {
  if (!iso) return "never";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function timeEl(iso) {
  if (!iso) return document.createTextNode("never");
  return el("time", { datetime: iso, text: when(iso) });
}

const pct = (rate) => (rate === null || rate === undefined ? "–" : `${(rate * 100).toFixed(rate === 1 ? 0 : 1)} %`);
const num = (n) => (n ?? 0).toLocaleString();

function setError(id, err) {
  const node = $(id);
  node.textContent = err ? (err instanceof ApiError ? err.message : String(err.message || err)) : "";
}

function notice(text) {
  $("notice").textContent = text;
}

function setReason(button, reasonId, reason) {
  const r = $(reasonId);
  button.disabled = !!reason;
  r.hidden = !reason;
  r.textContent = reason || "";
}

function parseList(text) {
  return text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fromLocalInput(value) {
  if (!value) return null;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new Error("Expires at is not a date and time.");
  return d.toISOString();
}

function dl(node, rows) {
  node.replaceChildren();
  for (const [term, value] of rows) {
    node.append(el("dt", { text: term }), el("dd", {}, typeof value === "string" ? document.createTextNode(value) : value));
  }
}

// At 390 px the tables are shown as one card per row (CSS); each cell carries its column's
// name for that, and explicit roles keep the table's semantics when CSS changes its display.
function stackCells(table) {
  table.setAttribute("role", "table");
  const names = [...table.tHead.rows[0].cells].map((c) => c.textContent.trim());
  for (const group of [table.tHead, ...table.tBodies]) group.setAttribute("role", "rowgroup");
  table.tHead.rows[0].setAttribute("role", "row");
  for (const th of table.tHead.rows[0].cells) th.setAttribute("role", "columnheader");
  for (const row of table.tBodies[0].rows) {
    row.setAttribute("role", "row");
    [...row.cells].forEach((c, i) => {
      c.setAttribute("role", c.tagName === "TH" ? "rowheader" : "cell");
      if (names[i] && c.colSpan === 1) c.dataset.label = names[i];
    });
  }
}

// ---------------------------------------------------------------- views

const VIEWS = ["view-sign-in", "view-keys", "view-key", "view-org"];

function show(view) {
  for (const v of VIEWS) $(v).hidden = v !== view;
  const signedIn = view !== "view-sign-in";
  $("nav").hidden = !signedIn;
  $("session").hidden = !signedIn;
  $("nav-keys").toggleAttribute("aria-current", view === "view-keys" || view === "view-key");
  if (view === "view-keys" || view === "view-key") $("nav-keys").setAttribute("aria-current", "page");
  $("nav-org").toggleAttribute("aria-current", view === "view-org");
  if (view === "view-org") $("nav-org").setAttribute("aria-current", "page");
}

function focusHeading(id) {
  const h = $(id);
  h.tabIndex = -1;
  h.focus();
}

// ---------------------------------------------------------------- sign in / out

async function signIn(key) {
  const { data: me } = await api("/whoami", { key });
  sessionStorage.setItem(STORAGE_KEY, key);
  state.me = me;
  $("who").textContent = `${me.name} (${me.prefix}) · organisation ${me.org_id}`;
  await loadCatalogue();
  const canCreate = holds("api-keys:create");
  setReason($("create-open"), "create-reason", canCreate ? null : "Creating keys needs the api-keys:create scope, which this key does not hold.");
  state.cursors = [null];
  show("view-keys");
  await loadKeys();
}

function signOut(message = "") {
  sessionStorage.removeItem(STORAGE_KEY);
  state.me = null;
  state.key = null;
  clearSecret();
  for (const d of document.querySelectorAll("dialog[open]")) d.close();
  for (const c of state.charts.values()) c.destroy();
  state.charts.clear();
  $("keys-table").tBodies[0].replaceChildren();
  $("sign-in-key").value = "";
  setError("sign-in-error", message || null);
  notice("");
  show("view-sign-in");
  $("sign-in-key").focus();
}

async function loadCatalogue() {
  if (state.catalogue.length) return;
  // Until GET /scopes exists, the scope catalogue is the served OpenAPI document's enum.
  const res = await fetch("/openapi.json", { headers: { Accept: "application/json" } });
  if (!res.ok) throw new Error(`The scope catalogue could not be read (HTTP ${res.status}).`);
  const doc = await res.json();
  state.catalogue = doc?.components?.schemas?.ScopeName?.enum ?? [];
}

// ---------------------------------------------------------------- key list

async function loadKeys() {
  setError("keys-error", null);
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  const status = $("status-filter").value;
  if (status) params.set("status", status);
  const cursor = state.cursors[state.cursors.length - 1];
  if (cursor) params.set("cursor", cursor);
  let page;
  try {
    ({ data: page } = await api(orgPath(`/api-keys?${params}`)));
  } catch (e) {
    setError("keys-error", e);
    return;
  }
  const body = $("keys-table").tBodies[0];
  body.replaceChildren();
  for (const k of page.items) {
    const link = el("a", { href: `#key/${k.id}`, text: k.name });
    link.addEventListener("click", (ev) => {
      ev.preventDefault();
      openKey(k.id);
    });
    body.append(
      el("tr", {},
        el("th", { scope: "row" }, link),
        el("td", {}, el("code", { text: k.prefix })),
        el("td", {}, el("span", { class: `status status-${k.status}`, text: k.status })),
        el("td", { text: k.environment }),
        el("td", {}, timeEl(k.created_at)),
        el("td", {}, timeEl(k.last_used_at)),
        el("td", { class: "num", text: num(k.total_calls) }),
        el("td", { class: "num", text: pct(k.success_rate) }),
      ),
    );
  }
  if (!page.items.length) {
    body.append(el("tr", {}, el("td", { colspan: "8", class: "muted", text: "No keys." })));
  }
  stackCells($("keys-table"));
  state.nextCursor = page.next_cursor;
  $("page-next").disabled = !page.next_cursor;
  $("page-prev").disabled = state.cursors.length < 2;
  $("page-first").disabled = state.cursors.length < 2;
  $("page-info").textContent = `Page ${state.cursors.length}`;
}

// ---------------------------------------------------------------- scopes as checkboxes

function scopeBoxes(container, prefix, { checked = [], reasonId }) {
  container.replaceChildren();
  const groups = new Map();
  for (const s of state.catalogue) {
    const i = s.lastIndexOf(":");
    const resource = i > 0 ? s.slice(0, i) : s;
    if (!groups.has(resource)) groups.set(resource, []);
    groups.get(resource).push(s);
  }
  for (const [resource, scopes] of groups) {
    const group = el("div", { class: "scope-group", role: "group", "aria-label": resource });
    group.append(el("p", { class: "scope-resource", text: resource, "aria-hidden": "true" }));
    for (const s of scopes) {
      const id = `${prefix}-${s.replace(/[^a-z0-9]/gi, "-")}`;
      const allowed = holds(s);
      const box = el("input", { type: "checkbox", id, value: s, name: "scope" });
      box.checked = checked.includes(s);
      if (!allowed) {
        box.disabled = true;
        box.setAttribute("aria-describedby", reasonId);
      }
      group.append(el("div", { class: `field check${allowed ? "" : " disabled"}` }, box, el("label", { for: id, text: s })));
    }
    container.append(group);
  }
}

const checkedScopes = (container) =>
  [...container.querySelectorAll("input[type=checkbox]:checked")].map((b) => b.value);

// ---------------------------------------------------------------- create

function openCreate() {
  const form = $("create-form");
  form.reset();
  setError("create-error", null);
  scopeBoxes($("create-scopes"), "create-scope", { reasonId: "scope-reason" });
  $("scope-reason").hidden = state.catalogue.every(holds);
  $("create-dialog").showModal();
  $("create-name").focus();
}

async function submitCreate(ev) {
  ev.preventDefault();
  setError("create-error", null);
  const name = $("create-name").value.trim();
  if (!name) {
    setError("create-error", "Name is required.");
    $("create-name").focus();
    return;
  }
  const body = { name, scopes: checkedScopes($("create-scopes")) };
  try {
    const ips = parseList($("create-ips").value);
    if (ips.length) body.allowed_ips = ips;
    const exp = fromLocalInput($("create-expires").value);
    if (exp) body.expires_at = exp;
    const rate = $("create-rate").value.trim();
    if (rate) body.rate_limit_per_minute = Number(rate);
  } catch (e) {
    setError("create-error", e);
    return;
  }
  $("create-submit").disabled = true;
  try {
    const { data } = await api(orgPath("/api-keys"), {
      method: "POST",
      body,
      headers: { "Idempotency-Key": crypto.randomUUID() },
    });
    $("create-dialog").close();
    // The secret goes to the dialog's text node only; nothing else keeps it.
    const secret = data.secret;
    delete data.secret;
    showSecret(secret, `${data.name} (${data.prefix})`, async () => {
      state.cursors = [null];
      await loadKeys();
      notice(`Key ${data.name} created.`);
    });
  } catch (e) {
    setError("create-error", e);
  } finally {
    $("create-submit").disabled = false;
  }
}

// ---------------------------------------------------------------- the secret, once

let afterSecret = null;

function showSecret(secret, label, then) {
  $("secret-title").textContent = `Your new API key: ${label}`;
  $("secret-value").textContent = secret;
  $("secret-copied").textContent = "";
  afterSecret = then;
  $("secret-dialog").showModal();
  $("secret-copy").focus();
}

function clearSecret() {
  $("secret-value").textContent = "";
  $("secret-copied").textContent = "";
}

async function copySecret() {
  const text = $("secret-value").textContent;
  try {
    await navigator.clipboard.writeText(text);
    $("secret-copied").textContent = "Copied to the clipboard.";
  } catch {
    // No clipboard permission: select it so Ctrl+C copies.
    const range = document.createRange();
    range.selectNodeContents($("secret-value"));
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    $("secret-copied").textContent = "Selected: press Ctrl+C (or Cmd+C) to copy.";
  }
}

function doneSecret() {
  // The secret leaves the DOM; the only reference to it was the text node.
  clearSecret();
  window.getSelection()?.removeAllRanges();
  $("secret-dialog").close();
  const then = afterSecret;
  afterSecret = null;
  if (then) then();
}

// ---------------------------------------------------------------- details

async function openKey(id) {
  setError("key-error", null);
  notice("");
  let res;
  try {
    res = await api(keyPath(id));
  } catch (e) {
    setError(state.key ? "key-error" : "keys-error", e);
    return;
  }
  state.key = res.data;
  state.keyEtag = res.etag;
  show("view-key");
  renderKey();
  focusHeading("key-title");
  await Promise.all([loadKeyChart(), loadHistory()]);
}

function keyLink(id) {
  const a = el("a", { href: `#key/${id}`, text: id });
  a.addEventListener("click", (ev) => {
    ev.preventDefault();
    openKey(id);
  });
  return a;
}

function renderKey() {
  const k = state.key;
  $("key-title").textContent = k.name;
  dl($("key-facts"), [
    ["Status", el("span", { class: `status status-${k.status}`, text: k.status })],
    ["Prefix", el("code", { text: k.prefix })],
    ["ID", el("code", { text: k.id })],
    ["Environment", k.environment],
    ["Created", timeEl(k.created_at)],
    ["Created by", k.created_by || "–"],
    ["Expires", k.expires_at ? timeEl(k.expires_at) : "never"],
    ["Rate limit", k.rate_limit_per_minute ? `${k.rate_limit_per_minute} per minute` : "the plan's"],
    ...(k.revoked_at ? [["Revoked", timeEl(k.revoked_at)], ["Revoked by", k.revoked_by || "–"]] : []),
    ["Rotated from", k.rotated_from ? keyLink(k.rotated_from) : "–"],
    ["Rotated to", k.rotated_to ? keyLink(k.rotated_to) : "–"],
  ]);
  const scopes = $("key-scopes");
  scopes.replaceChildren(...(k.scopes.length ? k.scopes.map((s) => el("li", {}, el("code", { text: s }))) : [el("li", { text: "no scopes" })]));
  const ips = $("key-ips");
  ips.replaceChildren(...(k.allowed_ips.length ? k.allowed_ips.map((s) => el("li", {}, el("code", { text: s }))) : [el("li", { text: "any address" })]));
  const u = k.usage;
  dl($("key-totals"), [
    ["Calls", num(u.total_calls)],
    ["Successful", num(u.successful_calls)],
    ["Errors", num(u.error_calls)],
    ["Rate limited (429)", num(u.rate_limited_calls)],
    ["Success rate", pct(u.success_rate)],
    ["Last used", timeEl(u.last_used_at)],
  ]);
  const body = $("key-routes").tBodies[0];
  body.replaceChildren(
    ...u.by_route.map((r) =>
      el("tr", {},
        el("td", { text: r.method }),
        el("td", {}, el("code", { text: r.route })),
        el("td", { class: "num", text: num(r.total_calls) }),
        el("td", { class: "num", text: num(r.error_calls) }),
        el("td", { class: "num", text: num(r.rate_limited_calls) }),
        el("td", { class: "num", text: pct(r.success_rate) }),
        el("td", {}, timeEl(r.last_used_at)),
      ),
    ),
  );
  if (!u.by_route.length) body.append(el("tr", {}, el("td", { colspan: "7", class: "muted", text: "No calls yet." })));
  stackCells($("key-routes"));

  const live = k.status === "active";
  setReason($("key-edit"), "key-edit-reason",
    !holds("api-keys:write") ? "Editing needs the api-keys:write scope." : !live ? `This key is ${k.status}.` : null);
  setReason($("key-rotate"), "key-rotate-reason",
    !holds("api-keys:create") ? "Rotating needs the api-keys:create scope." : !live ? `This key is ${k.status}.` : null);
  setReason($("key-revoke"), "key-revoke-reason",
    !holds("api-keys:revoke") ? "Revoking needs the api-keys:revoke scope." : k.status === "revoked" ? "This key is already revoked." : null);
}

async function loadHistory() {
  setError("history-error", null);
  const q = $("history-usage").checked ? "?include=usage" : "";
  let items;
  try {
    ({ data: { items } } = await api(keyPath(state.key.id, `/events${q}`)));
  } catch (e) {
    setError("history-error", e);
    return;
  }
  const body = $("key-history").tBodies[0];
  body.replaceChildren(
    ...items.slice().reverse().map((e) =>
      el("tr", {},
        el("td", {}, timeEl(e.recorded_at)),
        el("td", { text: e.type ?? e.event_type }),
        el("td", {}, el("code", { text: e.actor }), e.actor === state.me?.id ? " (you)" : null),
        el("td", { class: "num", text: String(e.stream_version) }),
      ),
    ),
  );
  stackCells($("key-history"));
}

// ---------------------------------------------------------------- charts

const SERIES = [
  { label: "Calls", field: "total_calls", stroke: "#2563eb" },
  { label: "Errors", field: "error_calls", stroke: "#dc2626" },
  { label: "429s", field: "rate_limited_calls", stroke: "#d97706" },
];
const STEP = { minute: 60, hour: 3600, day: 86400 };

// Each chart's latest request: an answer to an older one (the granularity changed, then
// the range, before the first answer came) is dropped, so the chart never shows one
// query's data under another's labels.
const chartRequests = new Map();

function latest(chartId) {
  const n = (chartRequests.get(chartId) || 0) + 1;
  chartRequests.set(chartId, n);
  return () => chartRequests.get(chartId) === n;
}

function usageQuery(granularityId, rangeId) {
  const granularity = $(granularityId).value;
  const range = Number($(rangeId).value);
  const to = new Date();
  const from = new Date(to.getTime() - range * 1000);
  const params = new URLSearchParams({ granularity, from: from.toISOString(), to: to.toISOString() });
  return { granularity, range, params };
}

function seriesData(resp) {
  const step = STEP[resp.granularity] || 3600;
  const start = Math.floor(new Date(resp.from).getTime() / 1000);
  const end = Math.floor(new Date(resp.to).getTime() / 1000);
  const byStart = new Map(resp.series.map((b) => [Math.floor(new Date(b.start).getTime() / 1000), b]));
  const xs = [];
  const cols = SERIES.map(() => []);
  for (let t = start; t < end; t += step) {
    xs.push(t);
    const b = byStart.get(t);
    SERIES.forEach((s, i) => cols[i].push(b ? b[s.field] : 0));
  }
  return [xs, ...cols];
}

function rangeText(rangeId) {
  const sel = $(rangeId);
  return sel.options[sel.selectedIndex].text;
}

function drawChart(containerId, data, label) {
  const box = $(containerId);
  box.setAttribute("aria-label", label);
  // How many buckets are drawn (the tests check the chart follows the query).
  box.dataset.buckets = String(data[0].length);
  const old = state.charts.get(containerId);
  if (old) old.destroy();
  const width = Math.max(280, box.clientWidth || 600);
  const chart = new uPlot(
    {
      width,
      height: 240,
      scales: { x: { time: true } },
      axes: [{}, { label: "calls" }],
      series: [{}, ...SERIES.map((s) => ({ label: s.label, stroke: s.stroke, width: 2, points: { show: false } }))],
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
    },
    data,
    box,
  );
  state.charts.set(containerId, chart);
}

function chartSummary(totals, granularity, rangeLabel) {
  return `${num(totals.total_calls)} calls, ${num(totals.error_calls)} errors, ${num(totals.rate_limited_calls)} 429s by ${granularity} over the ${rangeLabel}`;
}

async function loadKeyChart() {
  setError("key-chart-error", null);
  const { granularity, params } = usageQuery("key-granularity", "key-range");
  const rangeLabel = rangeText("key-range");
  const current = latest("key-chart");
  let resp;
  try {
    ({ data: resp } = await api(keyPath(state.key.id, `/usage?${params}`)));
  } catch (e) {
    if (current()) setError("key-chart-error", e);
    return;
  }
  if (!current()) return;
  const summary = chartSummary(resp.totals, granularity, rangeLabel);
  drawChart("key-chart", seriesData(resp), `Usage of ${state.key.name}: ${summary}`);
  $("key-chart-summary").textContent = `In the range: ${summary}.`;
}

async function openOrg() {
  show("view-org");
  focusHeading("org-title");
  await loadOrg();
}

async function loadOrg() {
  setError("org-error", null);
  const { granularity, params } = usageQuery("org-granularity", "org-range");
  const rangeLabel = rangeText("org-range");
  const current = latest("org-chart");
  let resp;
  try {
    ({ data: resp } = await api(orgPath(`/usage?${params}`)));
  } catch (e) {
    if (current()) setError("org-error", e);
    return;
  }
  if (!current()) return;
  const rows = (t) => [
    ["Calls", num(t.total_calls)],
    ["Successful", num(t.successful_calls)],
    ["Errors", num(t.error_calls)],
    ["Rate limited (429)", num(t.rate_limited_calls)],
    ["Success rate", pct(t.success_rate)],
  ];
  dl($("org-totals"), rows(resp.totals));
  dl($("org-all"), [...rows(resp.all_time), ["Last call", timeEl(resp.all_time.last_used_at)]]);
  const summary = chartSummary(resp.totals, granularity, rangeLabel);
  drawChart("org-chart", seriesData(resp), `Organisation usage: ${summary}`);
  $("org-chart-summary").textContent = `In the range: ${summary}.`;
}

// ---------------------------------------------------------------- revoke, rotate, edit

function openRevoke() {
  const k = state.key;
  $("revoke-title").textContent = `Revoke ${k.name}?`;
  $("revoke-warning").textContent =
    `Any integration using ${k.name} (${k.prefix}) will break at once: its calls are refused from the moment you confirm. This cannot be undone.`;
  $("revoke-reason").value = "";
  setError("revoke-error", null);
  $("revoke-dialog").showModal();
  $("revoke-cancel").focus();
}

async function submitRevoke(ev) {
  ev.preventDefault();
  const reason = $("revoke-reason").value.trim();
  $("revoke-confirm").disabled = true;
  try {
    await api(keyPath(state.key.id, "/revoke"), { method: "POST", body: reason ? { reason } : {} });
    $("revoke-dialog").close();
    const name = state.key.name;
    await openKey(state.key.id);
    notice(`Key ${name} revoked.`);
  } catch (e) {
    setError("revoke-error", e);
  } finally {
    $("revoke-confirm").disabled = false;
  }
}

function openRotate() {
  $("rotate-title").textContent = `Rotate ${state.key.name}`;
  $("rotate-grace").value = "3600";
  setError("rotate-error", null);
  $("rotate-dialog").showModal();
  $("rotate-grace").focus();
}

async function submitRotate(ev) {
  ev.preventDefault();
  const raw = $("rotate-grace").value.trim();
  const body = {};
  if (raw) {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0) {
      setError("rotate-error", "The grace period is a whole number of seconds, 0 or more.");
      return;
    }
    body.grace_period_seconds = n;
  }
  $("rotate-confirm").disabled = true;
  try {
    const { data } = await api(keyPath(state.key.id, "/rotate"), {
      method: "POST",
      body,
      headers: { "Idempotency-Key": crypto.randomUUID() },
    });
    $("rotate-dialog").close();
    const secret = data.secret;
    delete data.secret;
    showSecret(secret, `${data.name} (${data.prefix})`, async () => {
      await openKey(data.id);
      notice(`Key rotated: this is the new key. The old one stops after ${body.grace_period_seconds ?? 3600} seconds.`);
    });
  } catch (e) {
    setError("rotate-error", e);
  } finally {
    $("rotate-confirm").disabled = false;
  }
}

function openEdit() {
  const k = state.key;
  setError("edit-error", null);
  $("edit-title").textContent = `Edit ${k.name}`;
  $("edit-name").value = k.name;
  scopeBoxes($("edit-scopes"), "edit-scope", { checked: k.scopes, reasonId: "edit-scope-reason" });
  $("edit-scope-reason").hidden = state.catalogue.every(holds);
  $("edit-ips").value = k.allowed_ips.join(", ");
  $("edit-expires").value = toLocalInput(k.expires_at);
  $("edit-dialog").showModal();
  $("edit-name").focus();
}

async function submitEdit(ev) {
  ev.preventDefault();
  setError("edit-error", null);
  const k = state.key;
  const body = {};
  try {
    const name = $("edit-name").value.trim();
    if (!name) throw new Error("Name is required.");
    if (name !== k.name) body.name = name;
    const scopes = checkedScopes($("edit-scopes"));
    const same = (a, b) => a.length === b.length && a.every((x) => b.includes(x));
    if (!same(scopes, k.scopes)) body.scopes = scopes;
    const ips = parseList($("edit-ips").value);
    if (!same(ips, k.allowed_ips)) body.allowed_ips = ips;
    const exp = $("edit-expires").value;
    if (exp !== toLocalInput(k.expires_at)) body.expires_at = fromLocalInput(exp);
  } catch (e) {
    setError("edit-error", e);
    return;
  }
  if (!Object.keys(body).length) {
    $("edit-dialog").close();
    notice("Nothing changed.");
    return;
  }
  $("edit-save").disabled = true;
  try {
    await api(keyPath(k.id), {
      method: "PATCH",
      body,
      headers: { "If-Match": state.keyEtag || `"${k.version}"` },
    });
    $("edit-dialog").close();
    await openKey(k.id);
    notice(`Key ${body.name || k.name} saved.`);
  } catch (e) {
    if (e.status === 412) {
      setError("edit-error",
        "Someone else changed this key after you opened it, so your edit was not saved (nothing was overwritten). " +
        "Cancel, look at the key as it is now, and make your change again.");
    } else {
      setError("edit-error", e);
    }
  } finally {
    $("edit-save").disabled = false;
  }
}

// ---------------------------------------------------------------- wiring

function onResize() {
  for (const [id, chart] of state.charts) {
    const box = $(id);
    if (box.clientWidth) chart.setSize({ width: Math.max(280, box.clientWidth), height: 240 });
  }
}

function wire() {
  $("sign-in-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const key = $("sign-in-key").value.trim();
    setError("sign-in-error", null);
    if (!key) {
      setError("sign-in-error", "Paste an API key first.");
      return;
    }
    try {
      await signIn(key);
      $("sign-in-key").value = "";
      focusHeading("keys-title");
    } catch (e) {
      sessionStorage.removeItem(STORAGE_KEY);
      state.me = null;
      show("view-sign-in");
      setError("sign-in-error", e instanceof ApiError ? `Sign-in refused: ${e.message}` : e);
    }
  });
  $("sign-out").addEventListener("click", () => signOut("Signed out."));
  $("nav-keys").addEventListener("click", async () => {
    show("view-keys");
    focusHeading("keys-title");
    await loadKeys();
  });
  $("nav-org").addEventListener("click", openOrg);
  $("back-to-keys").addEventListener("click", async () => {
    show("view-keys");
    focusHeading("keys-title");
    await loadKeys();
  });
  $("status-filter").addEventListener("change", () => {
    state.cursors = [null];
    loadKeys();
  });
  $("keys-refresh").addEventListener("click", () => loadKeys());
  $("page-next").addEventListener("click", () => {
    if (!state.nextCursor) return;
    state.cursors.push(state.nextCursor);
    loadKeys();
  });
  $("page-prev").addEventListener("click", () => {
    if (state.cursors.length > 1) state.cursors.pop();
    loadKeys();
  });
  $("page-first").addEventListener("click", () => {
    state.cursors = [null];
    loadKeys();
  });

  $("create-open").addEventListener("click", openCreate);
  $("create-form").addEventListener("submit", submitCreate);
  $("create-cancel").addEventListener("click", () => $("create-dialog").close());

  $("secret-copy").addEventListener("click", copySecret);
  $("secret-done").addEventListener("click", doneSecret);
  // Escape closes the dialog too: treat it as Done, so the secret never lingers.
  $("secret-dialog").addEventListener("cancel", (ev) => {
    ev.preventDefault();
    doneSecret();
  });

  $("key-revoke").addEventListener("click", openRevoke);
  $("revoke-form").addEventListener("submit", submitRevoke);
  $("revoke-cancel").addEventListener("click", () => $("revoke-dialog").close());
  $("key-rotate").addEventListener("click", openRotate);
  $("rotate-form").addEventListener("submit", submitRotate);
  $("rotate-cancel").addEventListener("click", () => $("rotate-dialog").close());
  $("key-edit").addEventListener("click", openEdit);
  $("edit-form").addEventListener("submit", submitEdit);
  $("edit-cancel").addEventListener("click", () => $("edit-dialog").close());

  $("key-granularity").addEventListener("change", loadKeyChart);
  $("key-range").addEventListener("change", loadKeyChart);
  $("history-usage").addEventListener("change", loadHistory);
  $("org-granularity").addEventListener("change", loadOrg);
  $("org-range").addEventListener("change", loadOrg);
  window.addEventListener("resize", onResize);
}

async function start() {
  wire();
  const saved = token();
  if (saved) {
    try {
      await signIn(saved);
      return;
    } catch (e) {
      sessionStorage.removeItem(STORAGE_KEY);
      setError("sign-in-error", e);
    }
  }
  show("view-sign-in");
  document.body.dataset.ready = "true";
}

start().finally(() => {
  document.body.dataset.ready = "true";
});
