// fapiao-hub operations console. Talks to the ops API (/v1/ops/...) of the origin it is served from.
//
// Every value shown comes from business systems and channels and is untrusted: the DOM is built with
// createElement and textContent only (never an HTML string parsed from data), links are
// only ever http(s) URLs, and the Content-Security-Policy allows no inline script.
// The operator token lives in sessionStorage (this tab only) and leaves only in the Authorization
// header of fetch() calls: never in a URL, the history, or the console log.

const TOKEN_KEY = "fapiao-hub.operator-token";
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
    title: "Acknowledge a finding",
    help: "Records that a person looked at the finding, and why it is closed.",
    params: [{ name: "findingId", label: "Finding", required: true, kind: "finding" }],
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

function statusBadge(status) {
  const safe = STATUSES.includes(status) ? status : "";
  return el("span", { className: `status ${safe}`, text: show(status) });
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

function signedOut(message) {
  session.clear();
  $("overview").hidden = true;
  $("detail").hidden = true;
  $("sign-in").hidden = false;
  $("sign-out").hidden = true;
  $("session-state").textContent = "signed out";
  $("sign-in-error").textContent = message || "";
  const dialog = $("action-dialog");
  if (dialog.open) dialog.close();
}

function signedIn() {
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
        title: `list ${name}`, onclick: () => filterByStatus(name) },
      el("span", { className: "n", text: show(n) }),
      el("span", { text: name }),
    );
    counts.append(card);
  }
  if (!names.length) counts.append(el("p", { className: "muted", text: "No applications yet." }));
  extra.append(
    el("div", { className: "count static", dataset: { kind: "open-findings" } },
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
  return query;
}

function filterByStatus(status) {
  $("filter-status").value = status;
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

function applicationRow(item) {
  const link = el("a", { href: detailHash(item.businessSystem, item.openApplyCode), text: show(item.openApplyCode) });
  return el("tr", { dataset: { code: String(item.openApplyCode ?? "") } },
    el("td", { text: show(item.receivedAt) }),
    el("td", { text: show(item.businessSystem) }),
    el("td", {}, link),
    el("td", {}, statusBadge(item.status)),
    el("td", { text: show(item.sellerTaxNumber) }),
    el("td", { className: "buyer", text: show(item.buyerName) }),
    el("td", { text: show(item.channel) }),
    el("td", { className: "num", text: show(item.amount) }),
    el("td", { className: "num", text: show(item.tax) }),
    el("td", { className: "num", text: show(item.openFindings) }),
    el("td", { className: "reason", text: show(item.reason) }),
  );
}

// ------------------------------------------------------------------ detail
const detailState = { system: null, code: null, data: null };

async function loadDetail(system, code) {
  detailState.system = system;
  detailState.code = code;
  $("overview").hidden = true;
  $("detail").hidden = false;
  $("detail-title").textContent = `${system} / ${code}`;
  for (const id of ["detail-fields", "detail-actions", "detail-findings", "detail-timeline", "detail-invoices",
    "detail-raw-keys", "detail-order"]) clear($(id));
  try {
    renderDetail(await api("GET", applicationPath(system, code)));
  } catch (error) {
    $("detail-fields").append(el("dd", { className: "error", text: describeError(error) }));
  }
}

function applicationPath(system, code) {
  return `/applications/${encodeURIComponent(system)}/${encodeURIComponent(code)}`;
}

function renderDetail(data) {
  detailState.data = data;
  const fields = clear($("detail-fields"));
  const shown = [
    ["Status", statusBadge(data.status)], ["Reason", data.reason], ["Channel", data.channel],
    ["Request number", data.requestNumber], ["Attempts", data.attempts], ["Lease until", data.leaseUntil],
    ["Next poll", data.nextPollAt], ["Received", data.createdAt], ["Updated", data.updatedAt],
  ];
  for (const warning of Array.isArray(data.warnings) ? data.warnings : []) shown.push(["Warning", warning]);
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

  const findings = clear($("detail-findings"));
  const list = Array.isArray(data.findings) ? data.findings : [];
  for (const finding of list) findings.append(findingBox(finding));
  if (!list.length) findings.append(el("p", { className: "muted", text: "None." }));

  const timeline = clear($("detail-timeline"));
  for (const entry of Array.isArray(data.history) ? data.history : []) {
    const note = entry.kind === "note" || entry.is_note || entry.isNote;
    const who = entry.by ? ` (${String(entry.by)})` : "";
    timeline.append(el("li", { className: note ? "note" : "" },
      el("time", { text: show(entry.at) }),
      note ? null : statusBadge(entry.status), " ",
      el("span", { className: "what", text: (entry.note ? String(entry.note) : "") + who })));
  }
  // The history is paged, never cut (historyCursor): say when there is more than this page.
  if (data.historyNextCursor) {
    timeline.append(el("li", { className: "muted", text: "More entries follow: GET the detail with historyCursor." }));
  }

  const invoices = clear($("detail-invoices"));
  const issued = Array.isArray(data.invoices) ? data.invoices : [];
  if (issued.length) invoices.append(invoiceTable(issued));
  else invoices.append(el("p", { className: "muted", text: "None." }));

  const raw = clear($("detail-raw-keys"));
  for (const key of Array.isArray(data.rawKeys) ? data.rawKeys : []) raw.append(el("li", { text: show(key) }));
  if (!raw.children.length) raw.append(el("li", { className: "muted", text: "None." }));

  $("detail-order").textContent = JSON.stringify(data.invoiceOrder ?? null, null, 2);
}

function findingBox(finding) {
  const open = finding.open !== false;
  const box = el("div", { className: `finding${open ? "" : " closed"}`, dataset: { finding: String(finding.id ?? "") } },
    el("strong", { text: show(finding.kind) }), " ", el("span", { className: "muted", text: open ? "open" : "acknowledged" }),
    el("p", { text: show(finding.summary) }));
  const details = el("dl", { className: "fields" });
  for (const [key, value] of Object.entries(finding)) {
    if (["kind", "summary", "open"].includes(key) || value === null || value === undefined) continue;
    details.append(el("dt", { text: key }), el("dd", { text: typeof value === "object" ? JSON.stringify(value) : String(value) }));
  }
  box.append(details);
  return box;
}

function invoiceTable(invoices) {
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
    body.append(el("tr", { dataset: { invoice: String(invoice.invoiceNumber ?? "") } },
      el("td", { text: show(invoice.invoiceNumber) }), el("td", { text: show(invoice.invoiceCode) }),
      el("td", { text: show(invoice.invoiceDate) }), el("td", { text: show(invoice.invoiceType) }),
      el("td", { className: "num", text: show(invoice.amount) }), el("td", { className: "num", text: show(invoice.tax) }),
      el("td", {}, statusBadge(invoice.status)), files));
  }
  const head = el("thead", {}, el("tr", {}, ...["Number", "Code", "Date", "Type", "Amount", "Tax", "Status", "Files"]
    .map((name) => el("th", { text: name }))));
  return el("table", { id: "invoice-table" }, head, body);
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
    let input;
    if (param.kind === "finding") {
      input = el("select", { name: param.name, required: "" });
      const open = (detailState.data && Array.isArray(detailState.data.findings) ? detailState.data.findings : [])
        .filter((f) => f.open !== false);
      for (const finding of open) {
        input.append(el("option", { value: String(finding.id ?? ""), text: `${show(finding.kind)}: ${show(finding.summary)}` }));
      }
    } else {
      input = el("input", { name: param.name, type: param.type || "text", spellcheck: "false" });
      if (param.required) input.required = true;
    }
    params.append(el("label", {}, param.label + (param.required ? " (required)" : ""), input));
  }
  $("action-dialog").showModal();
}

function actionBody(name) {
  const body = { action: name, reason: $("action-reason").value.trim() };
  const form = $("action-form");
  const value = (field) => (form.elements[field] ? form.elements[field].value.trim() : "");
  if (name === "resolve-issued") {
    const invoice = { number: value("number") };
    if (value("code")) invoice.code = value("code");
    if (value("date")) invoice.date = value("date");
    body.invoice = invoice;
  } else if (name === "attach-result") {
    body.resultId = value("resultId");
  } else if (name === "acknowledge-finding") {
    body.findingId = value("findingId");
  }
  return body;
}

async function submitAction(event) {
  event.preventDefault();
  const name = pendingAction;
  if (!name || !detailState.system) return;
  const form = $("action-form");
  if (!form.reportValidity()) return;
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

// ------------------------------------------------------------------ routing (the hash names a view, never a secret)
function route() {
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
  $("detail").hidden = true;
  $("overview").hidden = false;
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
  $("sign-out").addEventListener("click", () => { banner(""); signedOut("Signed out."); });
  $("action-form").addEventListener("submit", submitAction);
  $("action-cancel").addEventListener("click", () => $("action-dialog").close());
  window.addEventListener("hashchange", () => { banner(""); route(); });
}

async function start() {
  setup();
  if (session.token || await localSession()) signedIn();
  else signedOut("");
}

start();
