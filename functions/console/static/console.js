// fapiao-hub operations console. Talks to the ops API (/v1/ops/...) of the origin it is served from.
//
// Every value shown comes from business systems and channels and is untrusted: the DOM is built with
// createElement and textContent only (never an HTML string parsed from data), links are
// only ever http(s) URLs, and the Content-Security-Policy allows no inline script.
// The operator token lives in sessionStorage (this tab only) and leaves only in the Authorization
// header of fetch() calls: never in a URL, the history, or the console log.

const TOKEN_KEY = "fapiao-hub.operator-token";
// Set by "Sign out" (this tab only): the local run's automatic sign-in is skipped until a sign-in.
const SIGNED_OUT_KEY = "fapiao-hub.signed-out";
// Invoices, filters and people's days are China's: every time is shown in China time, the zone named.
const CHINA_OFFSET_MS = 8 * 3600 * 1000;
const ZONE = "UTC+8";
const API = "/v1/ops";
const PAGE_SIZE = 50;
const STATUSES = [
  "RECEIVED", "DISPATCHING", "SUBMITTED", "UNKNOWN", "RETRY_WAIT", "VOIDING",
  "MANUAL_REVIEW", "STUCK", "MISMATCH", "ISSUED", "REJECTED", "VOIDED", "CANCELLED",
];
const NEEDS_PERSON = new Set(["MANUAL_REVIEW", "STUCK", "MISMATCH"]);

// What each action asks for besides its reason (the ops API's contract).
const ACTIONS = {
  "query": { title: "Ask the channel now", help: "Queries the channel for this application's outcome.", params: [] },
  "resolve-issued": {
    title: "Resolve as issued",
    help: "You saw the invoice at the channel or the tax bureau. Where the channel answers queries, the hub checks it first.",
    params: [
      { name: "number", label: "Invoice number", required: true },
      { name: "code", label: "Invoice code (legacy invoices)" },
      { name: "date", label: "Invoice date", type: "date" },
      // Required by the hub where the channel cannot be asked (recorded as attested by you).
      { name: "amount", label: "Amount excl. tax (channels that cannot be asked)" },
      { name: "tax", label: "Tax (channels that cannot be asked)" },
      { name: "sellerTaxNumber", label: "Seller tax number (channels that cannot be asked)" },
    ],
  },
  "resolve-not-issued": {
    title: "Resolve as not issued",
    help: "You confirmed nothing was issued: the application goes back to dispatch, or is closed so that the business system may send it again (per channel).",
    params: [],
  },
  "requeue": { title: "Requeue", help: "A STUCK application goes back to work in the state it was stuck in.", params: [] },
  "cancel": { title: "Cancel", help: "An application that never reached a channel ends CANCELLED (the business system is told).", params: [] },
  "attach-result": {
    title: "Attach an unmatched result",
    help: "Applies a result the hub could not match (by its id) to this application.",
    params: [{ name: "resultId", label: "Result id", required: true }],
  },
  "acknowledge-finding": {
    title: "Acknowledge findings",
    help: "Records that a person looked at the findings ticked below, and why they are closed (one reason for all).",
    params: [{ name: "findingGroup", label: "Findings (repeats of one finding count as one line)", kind: "findings" }],
  },
  "resolve-voided": {
    title: "Resolve as voided",
    help: "You voided the invoice at the channel (its portal): the application ends VOIDED and the business system is told.",
    params: [],
  },
  "resolve-not-voided": {
    title: "Resolve as not voided",
    help: "The void was not done at the channel (refused, or too late): the invoice stands and the application is ISSUED again.",
    params: [],
  },
};

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ DOM helpers (text only)
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "className") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clear(node) {
  node.replaceChildren();
  return node;
}

function show(text) {
  return text === null || text === undefined || text === "" ? "–" : String(text);
}

function statusBadge(status, extraClass = "") {
  const safe = STATUSES.includes(status) ? status : "";
  return el("span", { className: `status ${safe} ${extraClass}`.trim(), text: show(status) });
}

// A moment from the API (ISO 8601 UTC text, or epoch seconds) as milliseconds, or null.
function moment(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number" || /^\d+(\.\d+)?$/.test(String(value))) return Number(value) * 1000;
  const ms = Date.parse(String(value));
  return Number.isFinite(ms) ? ms : null;
}

// "2026-12-08 09:15 (UTC+8)": China time, whatever the browser's zone.
function chinaTime(value) {
  const ms = moment(value);
  if (ms === null) return show(value);
  const d = new Date(ms + CHINA_OFFSET_MS);
  const two = (n) => String(n).padStart(2, "0");
  return `${d.getUTCFullYear()}-${two(d.getUTCMonth() + 1)}-${two(d.getUTCDate())} ` +
    `${two(d.getUTCHours())}:${two(d.getUTCMinutes())} (${ZONE})`;
}

function relative(ms) {
  const minutes = Math.round((ms - Date.now()) / 60000);
  if (minutes === 0) return "now";
  const span = Math.abs(minutes) < 120 ? `${Math.abs(minutes)} min` : `${Math.round(Math.abs(minutes) / 60)} h`;
  return minutes > 0 ? `in ${span}` : `${span} ago`;
}

// A <time> in China time; the exact UTC moment in its title; with `near`, how far from now.
function timeNode(value, near = false) {
  const ms = moment(value);
  if (ms === null) return document.createTextNode(show(value));
  const utc = new Date(ms).toISOString();
  return el("time", { datetime: utc, title: `${utc} (UTC)`, text: chinaTime(value) + (near ? `, ${relative(ms)}` : "") });
}

// The playbook (docs/operations.md, "Playbook") as the hub serves it beside the console: offline too.
let PLAYBOOK = {};

async function loadPlaybook() {
  try {
    const response = await fetch("playbook.json", { cache: "no-cache", credentials: "omit" });
    const shipped = response.ok ? await response.json() : null;
    PLAYBOOK = shipped && typeof shipped.entries === "object" && shipped.entries ? shipped.entries : {};
  } catch {
    PLAYBOOK = {};
  }
}

function playbookHash(name) {
  return `#/playbook/${encodeURIComponent(name)}`;
}

// "<NAME>: what to do ..." with the name linking to its playbook entry; null when the playbook has none.
function guidance(name) {
  const entry = PLAYBOOK[name];
  if (!entry || typeof entry.whatToDo !== "string") return null;
  return el("p", { className: "todo", dataset: { playbook: String(name) } },
    el("a", { href: playbookHash(name), text: `${name} playbook` }), ": ", entry.whatToDo);
}

// An http(s) URL or nothing: a "javascript:" or "data:" link from a channel must never be clickable.
function safeUrl(value) {
  try {
    const url = new URL(String(value), window.location.href);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}

function banner(text, kind = "") {
  const node = $("banner");
  node.className = `banner ${kind}`;
  node.textContent = text;
  node.hidden = !text;
}

// ------------------------------------------------------------------ session
const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set(token) { sessionStorage.setItem(TOKEN_KEY, token); },
  clear() { sessionStorage.removeItem(TOKEN_KEY); },
};

class ApiError extends Error {
  constructor(status, message, data) {
    super(message);
    this.status = status;
    this.data = data;
  }
}

async function api(method, path, body) {
  const token = session.token;
  if (!token) throw new ApiError(401, "not signed in", null);
  const headers = { "Authorization": `Bearer ${token}`, "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(API + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
    });
  } catch {
    throw new ApiError(0, "the hub did not answer (network error)", null);
  }
  let envelope = null;
  try { envelope = await response.json(); } catch { envelope = null; }
  const message = envelope && typeof envelope.message === "string" ? envelope.message : response.statusText;
  const data = envelope ? envelope.data : null;
  if (!response.ok || (envelope && envelope.success === false)) {
    if (response.status === 401) signedOut("Your token was refused (401). Sign in again.");
    throw new ApiError(response.status, message || "refused", data);
  }
  return data;
}

// What an API refusal says, in one or more lines: status, message, the fields named, the current status.
function describeError(error) {
  if (!(error instanceof ApiError)) return String(error && error.message ? error.message : error);
  const lines = [`${error.status || "error"} ${error.message}`];
  const data = error.data;
  if (data && typeof data === "object") {
    if (Array.isArray(data.errors)) {
      for (const item of data.errors) {
        if (item && typeof item === "object") lines.push(`${show(item.field)}: ${show(item.message)}`);
      }
    }
    if (typeof data.field === "string" && !error.message.startsWith(data.field)) lines.push(`field: ${data.field}`);
    if (typeof data.status === "string") lines.push(`current status: ${data.status}`);
  }
  return lines.join("\n");
}

// The local run (make run) hands its operator token to a page served from 127.0.0.1 by
// GET /ops/local-session; in AWS that route does not exist (404) and the operator pastes a token.
async function localSession() {
  try {
    const response = await fetch("local-session", { cache: "no-store", credentials: "omit" });
    if (!response.ok) return false;
    const answer = await response.json();
    if (answer && typeof answer.token === "string" && answer.token) {
      session.set(answer.token);
      return true;
    }
  } catch { /* not the local run */ }
  return false;
}

// Only the refusal of a token is an error; "Signed out." is what the operator asked for.
function signedOut(message, isError = true) {
  session.clear();
  showView("sign-in");
  $("sign-out").hidden = true;
  $("session-state").textContent = "signed out";
  $("sign-in-error").textContent = isError ? message || "" : "";
  $("sign-in-note").textContent = isError ? "" : message || "";
  const dialog = $("action-dialog");
  if (dialog.open) dialog.close();
}

function signedIn() {
  sessionStorage.removeItem(SIGNED_OUT_KEY);
  $("sign-in-note").textContent = "";
  $("sign-in").hidden = true;
  $("sign-out").hidden = false;
  $("session-state").textContent = "signed in";
  route();
}

// ------------------------------------------------------------------ summary
async function loadSummary() {
  const counts = clear($("summary-counts"));
  const extra = clear($("summary-extra"));
  let data;
  try {
    data = await api("GET", "/summary");
  } catch (error) {
    counts.append(el("p", { className: "error", text: describeError(error) }));
    return;
  }
  const statuses = (data && data.statuses) || {};
  const needs = (data && data.needsPerson) || {};
  const names = Object.keys({ ...statuses, ...needs }).sort(
    (a, b) => (STATUSES.indexOf(a) + 100) % 100 - (STATUSES.indexOf(b) + 100) % 100,
  );
  for (const name of names) {
    const n = name in statuses ? statuses[name] : needs[name];
    const card = el(
      "button",
      { type: "button", className: `count${NEEDS_PERSON.has(name) ? " person" : ""}`, dataset: { status: name },
        title: `list ${name}` + (PLAYBOOK[name] ? `; what to do: ${PLAYBOOK[name].whatToDo}` : ""),
        onclick: () => filterByStatus(name) },
      el("span", { className: "n", text: show(n) }),
      el("span", { text: name }),
    );
    counts.append(card);
  }
  if (!names.length) counts.append(el("p", { className: "muted", text: "No applications yet." }));
  const open = Number(data && data.openFindings) || 0;
  extra.append(
    el("button", { type: "button", className: `count${open > 0 ? " person attention" : ""}`, dataset: { kind: "open-findings" },
      title: "list the applications with open findings", onclick: () => filterOpenFindings() },
    el("span", { className: "n", text: show(data && data.openFindings) }), el("span", { text: "open findings" })),
  );
  const queues = (data && data.deadLetterQueues) || {};
  for (const [name, depth] of Object.entries(queues)) {
    extra.append(
      el("div", { className: `count static${Number(depth) > 0 ? " person" : ""}`, dataset: { queue: name } },
        el("span", { className: "n", text: show(depth) }), el("span", { text: name })),
    );
  }
}

// ------------------------------------------------------------------ list
const listState = { query: {}, cursor: null, nextCursor: null, page: 1 };

function readFilters() {
  const form = $("filters");
  const query = {};
  for (const name of ["status", "businessSystem", "seller", "channel", "receivedFrom", "receivedTo"]) {
    const value = form.elements[name].value.trim();
    if (value) query[name] = value;
  }
  if (form.elements.openFindings.checked) query.openFindings = "true";
  return query;
}

function filterByStatus(status) {
  $("filter-status").value = status;
  $("filter-open-findings").checked = false;
  if (location.hash && location.hash !== "#/") location.hash = "#/";
  search();
}

function filterOpenFindings() {
  $("filters").reset();
  $("filter-open-findings").checked = true;
  if (location.hash && location.hash !== "#/") location.hash = "#/";
  search();
}

function search() {
  listState.query = readFilters();
  listState.cursor = null;
  listState.page = 1;
  loadPage();
}

async function loadPage() {
  const rows = clear($("application-rows"));
  const params = new URLSearchParams({ ...listState.query, limit: String(PAGE_SIZE) });
  if (listState.cursor) params.set("cursor", listState.cursor);
  $("page-next").disabled = true;
  $("page-first").disabled = listState.page === 1;
  $("page-state").textContent = "loading…";
  let data;
  try {
    data = await api("GET", `/applications?${params}`);
  } catch (error) {
    $("page-state").textContent = "";
    rows.append(el("tr", {}, el("td", { colspan: "11", className: "error", text: describeError(error) })));
    return;
  }
  const items = (data && Array.isArray(data.items)) ? data.items : [];
  for (const item of items) rows.append(applicationRow(item));
  $("list-empty").hidden = items.length > 0;
  listState.nextCursor = data && typeof data.nextCursor === "string" ? data.nextCursor : null;
  $("page-next").disabled = !listState.nextCursor;
  $("page-state").textContent = `page ${listState.page}, ${items.length} shown`;
}

function detailHash(system, code) {
  return `#/applications/${encodeURIComponent(system)}/${encodeURIComponent(code)}`;
}

// An application with open findings is not healthy, whatever its status says: flagged, never a green badge.
function applicationRow(item) {
  const href = detailHash(item.businessSystem, item.openApplyCode);
  const link = el("a", { href, text: show(item.openApplyCode) });
  const open = Number(item.openFindings) || 0;
  const findings = open > 0
    ? el("a", { href, className: "flag", text: `${open} open` })
    : document.createTextNode(show(item.openFindings));
  return el("tr", { className: open > 0 ? "flagged" : "", dataset: { code: String(item.openApplyCode ?? ""), openFindings: String(open) } },
    el("td", {}, timeNode(item.receivedAt)),
    el("td", { text: show(item.businessSystem) }),
    el("td", {}, link),
    el("td", {}, statusBadge(item.status, open > 0 ? "held" : "")),
    el("td", { text: show(item.sellerTaxNumber) }),
    el("td", { className: "buyer", text: show(item.buyerName) }),
    el("td", { text: show(item.channel) }),
    el("td", { className: "num", text: show(item.amount) }),
    el("td", { className: "num", text: show(item.tax) }),
    el("td", { className: "num findings" }, findings),
    el("td", { className: "reason", text: show(item.reason) }),
  );
}

// ------------------------------------------------------------------ detail
const detailState = { system: null, code: null, data: null, selected: new Set() };

async function loadDetail(system, code) {
  detailState.system = system;
  detailState.code = code;
  detailState.selected = new Set();
  showView("detail");
  $("detail-title").textContent = `${system} / ${code}`;
  for (const id of ["detail-guidance", "detail-fields", "detail-actions", "detail-findings", "detail-timeline",
    "detail-invoices", "detail-raw-keys", "detail-order"]) clear($(id));
  $("detail-guidance").hidden = true;
  $("findings-bar").hidden = true;
  closeRaw();
  try {
    renderDetail(await api("GET", applicationPath(system, code)));
  } catch (error) {
    $("detail-fields").append(el("dd", { className: "error", text: describeError(error) }));
  }
}

function applicationPath(system, code) {
  return `/applications/${encodeURIComponent(system)}/${encodeURIComponent(code)}`;
}

function openFindingsOf(data) {
  return (Array.isArray(data.findings) ? data.findings : []).filter((f) => f && f.open !== false);
}

function renderDetail(data) {
  detailState.data = data;
  const open = openFindingsOf(data);

  // What to do now: the status's playbook line, or the open findings' when the status looks settled.
  const help = clear($("detail-guidance"));
  // A VOIDING application needs a person when its void is to be done at the channel by hand.
  const todo = NEEDS_PERSON.has(data.status) || (data.status === "VOIDING" && data.needsPerson)
    ? guidance(data.status) : null;
  if (todo) help.append(todo);
  if (open.length && !NEEDS_PERSON.has(data.status)) {
    help.append(el("p", { className: "todo", text: `${data.status} but held: ${open.length} open finding(s) below need a person.` }));
  }
  help.hidden = !help.children.length;

  const fields = clear($("detail-fields"));
  const status = el("span", {}, statusBadge(data.status, open.length && !NEEDS_PERSON.has(data.status) ? "held" : ""));
  if (open.length) {
    // Not a hash link: the hash names the view.
    status.append(" ", el("button", { type: "button", className: "flag link", text: `${open.length} open finding(s)`,
      onclick: () => $("findings-title").scrollIntoView({ block: "start" }) }));
  }
  const shown = [
    ["Status", status], ["Reason", data.reason], ["Channel", data.channel],
    ["Request number", data.requestNumber], ["Attempts", data.attempts],
    ["Lease until", data.leaseUntil === null || data.leaseUntil === undefined ? null : timeNode(data.leaseUntil, true)],
    ["Next poll", data.nextPollAt === null || data.nextPollAt === undefined ? null : timeNode(data.nextPollAt, true)],
    ["Received", timeNode(data.createdAt)], ["Updated", timeNode(data.updatedAt)],
  ];
  for (const warning of Array.isArray(data.warnings) ? data.warnings : []) shown.push(["Warning", warning]);
  // The other applications its findings concern (an invoice clash: the one holding the invoice), linked.
  for (const other of Array.isArray(data.relatedApplications) ? data.relatedApplications : []) {
    if (other && other.businessSystem && other.openApplyCode) {
      shown.push(["Related", el("a", { href: detailHash(String(other.businessSystem), String(other.openApplyCode)),
        dataset: { related: String(other.openApplyCode) },
        text: `${other.businessSystem} / ${other.openApplyCode} (${show(other.status)})` })]);
    } else if (other && other.outsideReach) {
      shown.push(["Related", String(other.outsideReach)]);
    }
  }
  for (const [name, value] of shown) {
    fields.append(el("dt", { text: name }), el("dd", { dataset: { field: name } }, value instanceof Node ? value : show(value)));
  }

  const actions = clear($("detail-actions"));
  const available = Array.isArray(data.actions) ? data.actions : [];
  for (const name of available) {
    const spec = ACTIONS[name];
    actions.append(el("button", {
      type: "button", className: "action", dataset: { action: String(name) },
      text: spec ? spec.title : String(name), onclick: () => openAction(String(name)),
    }));
  }
  if (!available.length) actions.append(el("span", { className: "muted", text: "No action applies now." }));

  renderFindings(data);

  const timeline = clear($("detail-timeline"));
  for (const entry of Array.isArray(data.history) ? data.history : []) {
    const note = entry.kind === "note" || entry.is_note || entry.isNote;
    const who = entry.by ? ` (${String(entry.by)})` : "";
    timeline.append(el("li", { className: note ? "note" : "" },
      timeNode(entry.at), " ",
      note ? null : statusBadge(entry.status), " ",
      el("span", { className: "what", text: (entry.note ? String(entry.note) : "") + who })));
  }
  // The history is paged, never cut (historyCursor): say when there is more than this page.
  if (data.historyNextCursor) {
    timeline.append(el("li", { className: "muted", text: "More entries follow: GET the detail with historyCursor." }));
  }

  const invoices = clear($("detail-invoices"));
  const issued = Array.isArray(data.invoices) ? data.invoices : [];
  if (issued.length) invoices.append(invoiceTable(issued, data));
  else invoices.append(el("p", { className: "muted", text: "None." }));

  const raw = clear($("detail-raw-keys"));
  for (const key of Array.isArray(data.rawKeys) ? data.rawKeys : []) {
    raw.append(el("li", { dataset: { rawKey: String(key) } },
      el("button", { type: "button", text: "Show", onclick: () => showRaw(String(key)) }), " ",
      el("span", { className: "mono", text: show(key) })));
  }
  if (!raw.children.length) {
    raw.append(el("li", { className: "muted", text: "None: no answer of a channel was kept for this application (a timeout has none)." }));
  }

  $("detail-order").textContent = JSON.stringify(data.invoiceOrder ?? null, null, 2);
}

// ------------------------------------------------------------------ findings (repeats collapsed)
// Repeats of one finding (same kind, same fields, same invoices, same state) are one row with a count:
// twelve reconciliation runs finding the same difference are one thing to look at, not twelve.
function findingGroups(findings) {
  const groups = new Map();
  for (const finding of findings) {
    if (!finding || typeof finding !== "object") continue;
    const differences = Array.isArray(finding.differences) ? finding.differences.filter((d) => d && typeof d === "object") : [];
    const fields = differences.map((d) => String(d.field ?? "")).sort();
    const invoices = (Array.isArray(finding.invoiceNumbers) ? finding.invoiceNumbers : []).map(String).sort();
    const open = finding.open !== false;
    const key = JSON.stringify([String(finding.kind ?? ""), fields, invoices, open]);
    let group = groups.get(key);
    if (!group) {
      group = { key, kind: String(finding.kind ?? ""), fields, invoices, open, items: [], first: null, last: null, latest: null };
      groups.set(key, group);
    }
    group.items.push(finding);
    // One finding seen again is counted on it (count, lastSeen): the same as repeats in the list.
    group.seen = (group.seen || 0) + (Number.isInteger(finding.count) && finding.count > 0 ? finding.count : 1);
    const at = moment(finding.lastSeen || finding.at);
    if (group.first === null || (at !== null && at < group.first)) group.first = at;
    if (group.last === null || (at !== null && at >= group.last)) { group.last = at; group.latest = finding; }
    if (!group.latest) group.latest = finding;
  }
  return [...groups.values()].sort((a, b) => (b.open - a.open) || ((b.last ?? 0) - (a.last ?? 0)));
}

function differencesTable(finding) {
  const differences = Array.isArray(finding.differences) ? finding.differences.filter((d) => d && typeof d === "object") : [];
  if (!differences.length) return null;
  const body = el("tbody");
  for (const difference of differences) {
    body.append(el("tr", { dataset: { field: String(difference.field ?? "") } },
      el("td", { className: "mono", text: show(difference.field) }),
      el("td", { className: "expected", text: show(difference.expected) }),
      el("td", { className: "reported", text: show(difference.reported) })));
  }
  return el("table", { className: "differences" },
    el("thead", {}, el("tr", {}, el("th", { text: "Field" }), el("th", { text: "Expected (application)" }),
      el("th", { text: "Reported (channel)" }))), body);
}

function groupLabel(group) {
  const parts = [group.kind];
  if (group.fields.length) parts.push(group.fields.join(", "));
  if (group.invoices.length) parts.push(`invoice ${group.invoices.join(", ")}`);
  for (const d of (group.latest.differences || []).slice(0, 2)) {
    if (d && typeof d === "object") parts.push(`${show(d.field)} ${show(d.expected)} → ${show(d.reported)}`);
  }
  if (group.seen > 1) parts.push(`×${group.seen}`);
  if (group.last !== null) parts.push(`last seen ${chinaTime(group.last / 1000)}`);
  return parts.join(" · ");
}

function renderFindings(data) {
  const box = clear($("detail-findings"));
  const groups = findingGroups(Array.isArray(data.findings) ? data.findings : []);
  detailState.groups = groups;
  detailState.selected = new Set([...detailState.selected].filter((key) => groups.some((g) => g.open && g.key === key)));
  const canAcknowledge = Array.isArray(data.actions) && data.actions.includes("acknowledge-finding");
  for (const group of groups) box.append(findingBox(group, canAcknowledge));
  if (!groups.length) box.append(el("p", { className: "muted", text: "None." }));
  $("findings-bar").hidden = !(canAcknowledge && groups.some((g) => g.open));
  updateSelection();
}

function updateSelection() {
  const chosen = (detailState.groups || []).filter((g) => detailState.selected.has(g.key));
  const ids = chosen.reduce((n, g) => n + g.items.length, 0);
  $("findings-acknowledge").disabled = !ids;
  $("findings-selected").textContent = ids ? `${chosen.length} selected (${ids} finding${ids === 1 ? "" : "s"})` : "tick findings to acknowledge them together";
}

function findingBox(group, canAcknowledge) {
  const finding = group.latest;
  const head = el("div", { className: "finding-head" });
  if (group.open && canAcknowledge) {
    head.append(el("input", {
      type: "checkbox", className: "pick", title: "select for acknowledging", "aria-label": `select ${group.kind}`,
      onchange: (event) => {
        if (event.target.checked) detailState.selected.add(group.key); else detailState.selected.delete(group.key);
        updateSelection();
      },
    }));
    head.lastChild.checked = detailState.selected.has(group.key);
  }
  head.append(
    el("a", { href: playbookHash(group.kind), className: "kind", text: show(group.kind) }), " ",
    el("span", { className: group.open ? "state open" : "state", text: group.open ? "open" : "acknowledged" }),
  );
  if (group.items.length > 1) head.append(" ", el("span", { className: "repeat", text: `×${group.items.length}` }));
  head.append(" ", el("span", { className: "muted" }, "last seen ", timeNode(finding.at)));
  if (group.items.length > 1 && group.first !== null) {
    head.append(el("span", { className: "muted" }, ", first ", timeNode(group.first / 1000)));
  }
  const box = el("div", {
    className: `finding${group.open ? "" : " closed"}`,
    dataset: { finding: String(finding.id ?? ""), kind: group.kind, count: String(group.items.length) },
  }, head);
  const todo = group.open ? guidance(group.kind) : null;
  if (todo) box.append(todo);
  box.append(el("p", { className: "summary", text: show(finding.summary) }));
  const table = differencesTable(finding);
  if (table) box.append(table);
  const facts = [];
  if (group.invoices.length) facts.push(`invoice ${group.invoices.join(", ")}`);
  if (finding.source) facts.push(`found by ${finding.source}`);
  if (facts.length) box.append(el("p", { className: "muted", text: facts.join(" · ") }));
  return box;
}

// What "issued" rests on: figures compared with the channel (its answer or the invoice's file), typed
// by an operator, or held only from the application (nobody at the channel stated them).
function checkedCell(invoice) {
  const cell = el("td", { className: "checked" });
  if (!Array.isArray(invoice.verified)) return cell;  // recorded before the hub said
  const list = (value) => (Array.isArray(value) && value.length ? value.join(", ") : "");
  const fromFile = new Set(Array.isArray(invoice.verifiedFromFile) ? invoice.verifiedFromFile : []);
  const verified = invoice.verified.map((name) => (fromFile.has(name) ? `${name} (file)` : name));
  if (verified.length) cell.append(el("div", { className: "verified", text: `verified: ${verified.join(", ")}` }));
  if (list(invoice.attestedByOperator)) {
    cell.append(el("div", { className: "attested", text: `attested by operator: ${list(invoice.attestedByOperator)}` }));
  }
  if (list(invoice.fromApplication)) {
    cell.append(el("div", { className: "error", text: `unverified, from the application: ${list(invoice.fromApplication)}` }));
  }
  return cell;
}

function invoiceState(invoice, data, open) {
  // A MISMATCH application's invoices were issued by the channel but not accepted: never a green ISSUED.
  const number = String(invoice.invoiceNumber ?? "");
  const named = open.filter((f) => (Array.isArray(f.invoiceNumbers) ? f.invoiceNumbers : []).map(String).includes(number));
  if (data.status === "MISMATCH") {
    return { text: "MISMATCH: not accepted", className: "status MISMATCH", title: "issued by the channel; differs from the application; a person decides" };
  }
  if (named.length) {
    return { text: `${show(invoice.status)}: ${named[0].kind}`, className: "status held", title: "an open finding names this invoice" };
  }
  const safe = STATUSES.includes(invoice.status) ? invoice.status : "";
  return { text: show(invoice.status), className: `status ${safe}`, title: null };
}

function invoiceTable(invoices, data) {
  const open = openFindingsOf(data);
  const body = el("tbody");
  for (const invoice of invoices) {
    const files = el("td");
    for (const file of Array.isArray(invoice.files) ? invoice.files : []) {
      const url = file && safeUrl(file.url);
      if (url) {
        files.append(el("a", { href: url, rel: "noopener noreferrer", target: "_blank", download: "",
          text: `${show(file.format)} (${show(file.size)} bytes)` }), " ");
      } else {
        files.append(el("span", { className: "error", text: `${show(file && file.format)} not stored: ${show(file && file.error)}` }), " ");
      }
    }
    const state = invoiceState(invoice, data, open);
    body.append(el("tr", { dataset: { invoice: String(invoice.invoiceNumber ?? "") } },
      el("td", { text: show(invoice.invoiceNumber) }), el("td", { text: show(invoice.invoiceCode) }),
      el("td", { text: show(invoice.invoiceDate) }), el("td", { text: show(invoice.invoiceType) }),
      el("td", { className: "num", text: show(invoice.amount) }), el("td", { className: "num", text: show(invoice.tax) }),
      el("td", { className: "state" }, el("span", { className: state.className, title: state.title, text: state.text })),
      checkedCell(invoice), files));
  }
  const head = el("thead", {}, el("tr", {}, ...["Number", "Code", "Date (China)", "Type", "Amount", "Tax", "State", "Checked", "Files"]
    .map((name) => el("th", { text: name }))));
  return el("table", { id: "invoice-table" }, head, body);
}

// ------------------------------------------------------------------ raw answers (read through the ops API)
async function showRaw(key) {
  const view = $("raw-view");
  view.hidden = false;
  $("raw-view-key").textContent = key;
  $("raw-view-meta").textContent = "loading…";
  $("raw-view-body").textContent = "";
  try {
    const data = await api("GET", `${applicationPath(detailState.system, detailState.code)}/raw?key=${encodeURIComponent(key)}`);
    $("raw-view-meta").textContent = `${show(data.size)} bytes, sha256 ${show(data.sha256)}`;
    let text = typeof data.text === "string" ? data.text : null;
    if (text !== null) {
      try { text = JSON.stringify(JSON.parse(text), null, 2); } catch { /* shown as it came */ }
      $("raw-view-body").textContent = text;
    } else {
      $("raw-view-body").textContent = `(not UTF-8 text; base64)\n${show(data.base64)}`;
    }
  } catch (error) {
    $("raw-view-meta").textContent = "";
    $("raw-view-body").textContent = describeError(error);
  }
  view.scrollIntoView({ block: "nearest" });
}

function closeRaw() {
  $("raw-view").hidden = true;
  $("raw-view-body").textContent = "";
}

// ------------------------------------------------------------------ actions
let pendingAction = null;

function openAction(name) {
  pendingAction = name;
  const spec = ACTIONS[name] || { title: name, help: "", params: [] };
  $("action-title").textContent = spec.title;
  $("action-help").textContent = spec.help;
  $("action-error").textContent = "";
  $("action-reason").value = "";
  $("action-submit").disabled = false;
  const params = clear($("action-params"));
  for (const param of spec.params) {
    if (param.kind === "findings") {
      params.append(findingChoices());
      continue;
    }
    const input = el("input", { name: param.name, type: param.type || "text", spellcheck: "false" });
    if (param.required) input.required = true;
    params.append(el("label", {}, param.label + (param.required ? " (required)" : ""), input));
  }
  $("action-dialog").showModal();
}

// One checkbox per open finding group: what it is, how often, when last, expected → reported.
function findingChoices() {
  const open = (detailState.groups || []).filter((g) => g.open);
  const selected = open.filter((g) => detailState.selected.has(g.key));
  const fieldset = el("fieldset", { className: "choices" }, el("legend", { text: "Findings to acknowledge" }));
  for (const group of open) {
    const box = el("input", { type: "checkbox", name: "findingGroup", value: group.key });
    box.checked = selected.length ? detailState.selected.has(group.key) : open.length === 1;
    fieldset.append(el("label", { className: "choice" }, box, " ", groupLabel(group)));
  }
  if (!open.length) fieldset.append(el("p", { className: "muted", text: "No open finding." }));
  return fieldset;
}

function chosenFindingIds() {
  const keys = new Set([...$("action-form").querySelectorAll('input[name="findingGroup"]:checked')].map((n) => n.value));
  return (detailState.groups || []).filter((g) => g.open && keys.has(g.key))
    .flatMap((g) => g.items.map((f) => String(f.id ?? ""))).filter(Boolean);
}

function actionBody(name) {
  const body = { action: name, reason: $("action-reason").value.trim() };
  const form = $("action-form");
  const value = (field) => (form.elements[field] ? form.elements[field].value.trim() : "");
  if (name === "resolve-issued") {
    const invoice = { number: value("number") };
    if (value("code")) invoice.code = value("code");
    if (value("date")) invoice.date = value("date");
    for (const field of ["amount", "tax", "sellerTaxNumber"]) if (value(field)) invoice[field] = value(field);
    body.invoice = invoice;
  } else if (name === "attach-result") {
    body.resultId = value("resultId");
  }
  return body;
}

async function submitAction(event) {
  event.preventDefault();
  const name = pendingAction;
  if (!name || !detailState.system) return;
  const form = $("action-form");
  if (!form.reportValidity()) return;
  if (name === "acknowledge-finding") {
    acknowledgeFindings();
    return;
  }
  $("action-submit").disabled = true;
  $("action-error").textContent = "";
  try {
    const data = await api("POST", `${applicationPath(detailState.system, detailState.code)}/actions`, actionBody(name));
    $("action-dialog").close();
    banner(`${name}: done; the application is now ${show(data && data.status)}.`, "ok");
    if (data && typeof data === "object" && "history" in data) renderDetail(data);
    else loadDetail(detailState.system, detailState.code);
  } catch (error) {
    $("action-error").textContent = describeError(error);
    $("action-submit").disabled = false;
    if (error instanceof ApiError && error.status === 409) {
      // The application moved meanwhile: show what it is now behind the dialog.
      api("GET", applicationPath(detailState.system, detailState.code)).then(renderDetail, () => {});
    }
  }
}

// The ops API acknowledges one finding per call: the console sends one call per finding, one reason for
// all, one after the other, and stops at the first refusal (saying how far it got).
async function acknowledgeFindings() {
  const ids = chosenFindingIds();
  if (!ids.length) {
    $("action-error").textContent = "Tick at least one finding.";
    return;
  }
  const reason = $("action-reason").value.trim();
  const path = `${applicationPath(detailState.system, detailState.code)}/actions`;
  $("action-submit").disabled = true;
  $("action-error").textContent = "";
  let data = null;
  let done = 0;
  for (const id of ids) {
    $("action-help").textContent = `acknowledging ${done + 1} of ${ids.length}…`;
    try {
      data = await api("POST", path, { action: "acknowledge-finding", reason, findingId: id });
      done += 1;
    } catch (error) {
      $("action-error").textContent = `${done} of ${ids.length} acknowledged; stopped at finding ${id}:\n${describeError(error)}`;
      $("action-submit").disabled = false;
      detailState.selected = new Set();
      api("GET", applicationPath(detailState.system, detailState.code)).then(renderDetail, () => {});
      return;
    }
  }
  $("action-dialog").close();
  detailState.selected = new Set();
  banner(`acknowledge-finding: ${done} finding${done === 1 ? "" : "s"} acknowledged; the application is now ${show(data && data.status)}.`, "ok");
  if (data && typeof data === "object" && "history" in data) renderDetail(data);
  else loadDetail(detailState.system, detailState.code);
}

// ------------------------------------------------------------------ playbook
function renderPlaybook(name) {
  showView("playbook");
  const box = clear($("playbook-entries"));
  const entries = Object.entries(PLAYBOOK);
  for (const [entryName, entry] of entries) {
    const section = el("section", { className: `playbook-entry${entryName === name ? " current" : ""}`,
      id: `playbook-${entryName}`, dataset: { playbook: entryName } },
    el("h3", {}, el("a", { href: playbookHash(entryName), text: entryName })),
    el("p", { className: "todo" }, el("strong", { text: "What to do: " }), show(entry && entry.whatToDo)));
    for (const paragraph of Array.isArray(entry && entry.text) ? entry.text : []) section.append(el("p", { text: String(paragraph) }));
    section.append(el("p", { className: "muted", text: `docs/operations.md#${show(entry && entry.anchor)}` }));
    box.append(section);
  }
  if (!entries.length) box.append(el("p", { className: "error", text: "The playbook could not be loaded (playbook.json)." }));
  const current = name ? $(`playbook-${name}`) : null;
  if (current) current.scrollIntoView({ block: "start" });
}

// ------------------------------------------------------------------ routing (the hash names a view, never a secret)
const VIEWS = ["sign-in", "overview", "detail", "playbook"];

function showView(name) {
  for (const view of VIEWS) $(view).hidden = view !== name;
}

function route() {
  const playbook = /^#\/playbook(?:\/([^/]*))?$/.exec(location.hash);
  if (playbook) {
    let name = "";
    try { name = decodeURIComponent(playbook[1] || ""); } catch { name = ""; }
    renderPlaybook(name);
    return;
  }
  if (!session.token) return;
  const match = /^#\/applications\/([^/]+)\/(.+)$/.exec(location.hash);
  if (match) {
    let system, code;
    try {
      system = decodeURIComponent(match[1]);
      code = decodeURIComponent(match[2]);
    } catch {
      location.hash = "#/";
      return;
    }
    loadDetail(system, code);
    return;
  }
  showView("overview");
  loadSummary();
  loadPage();
}

function setup() {
  const select = $("filter-status");
  for (const status of STATUSES) select.append(el("option", { value: status, text: status }));
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); search(); });
  $("filters-clear").addEventListener("click", () => { $("filters").reset(); search(); });
  $("page-next").addEventListener("click", () => {
    if (!listState.nextCursor) return;
    listState.cursor = listState.nextCursor;
    listState.page += 1;
    loadPage();
  });
  $("page-first").addEventListener("click", () => { listState.cursor = null; listState.page = 1; loadPage(); });
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("token-input");
    const token = input.value.trim();
    input.value = "";
    if (!token) return;
    session.set(token);
    $("sign-in-error").textContent = "";
    signedIn();
  });
  $("local-sign-in").addEventListener("click", async () => {
    if (await localSession()) signedIn();
    else signedOut("This is not the local run: no token to hand out. Paste an operator token.");
  });
  $("sign-out").addEventListener("click", () => {
    banner("");
    // Remembered for this tab: a reload stays signed out instead of asking the local run again.
    sessionStorage.setItem(SIGNED_OUT_KEY, "1");
    signedOut("Signed out.", false);
  });
  $("findings-acknowledge").addEventListener("click", () => openAction("acknowledge-finding"));
  $("raw-view-close").addEventListener("click", closeRaw);
  $("action-form").addEventListener("submit", submitAction);
  $("action-cancel").addEventListener("click", () => $("action-dialog").close());
  window.addEventListener("hashchange", () => { banner(""); route(); });
}

async function start() {
  setup();
  await loadPlaybook();
  const chose = sessionStorage.getItem(SIGNED_OUT_KEY) === "1";
  if (session.token || (!chose && await localSession())) signedIn();
  else signedOut(chose ? "Signed out." : "", false);
}

start();
