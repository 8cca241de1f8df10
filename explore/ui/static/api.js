// Client of the JSON API on the same origin, and the one place that knows its addresses and the
// shape of its answers (docs/api.md): views call getOverview, listSessions, getPart and
// findRequest and read what they return. The bearer token, when the server asks for one, lives
// in sessionStorage for this tab only and is sent as a header; it never goes into a URL. So does
// the write token that blocks and unblocks (server.write_tokens_file), asked for the first time
// a write needs it.

const TOKEN_KEY = 'apisessions.token';
const WRITE_TOKEN_KEY = 'apisessions.write_token';

// AuthRequired is thrown when the API answers 401.
export class AuthRequired extends Error {
  constructor() { super('the API needs a token'); this.name = 'AuthRequired'; }
}

// APIError carries the API's {"error": ...} message and the HTTP status.
export class APIError extends Error {
  constructor(status, message) { super(message); this.name = 'APIError'; this.status = status; }
}

function token() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

export function setToken(v) {
  try {
    if (v) sessionStorage.setItem(TOKEN_KEY, v); else sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled: the token lasts until the page reloads */ memoryToken = v; }
}

let memoryToken = '';
let memoryWriteToken = '';

function writeToken() {
  try { return sessionStorage.getItem(WRITE_TOKEN_KEY) || memoryWriteToken; } catch { return memoryWriteToken; }
}

// setWriteToken keeps the write token for this tab ("" forgets it).
export function setWriteToken(v) {
  try {
    if (v) sessionStorage.setItem(WRITE_TOKEN_KEY, v); else sessionStorage.removeItem(WRITE_TOKEN_KEY);
  } catch { memoryWriteToken = v; }
}

// hasWriteToken says whether a write token is kept for this tab.
export function hasWriteToken() { return writeToken() !== ''; }

// WriteTokenRequired is thrown when a write is answered 401: no write token, or a wrong one.
export class WriteTokenRequired extends Error {
  constructor(message) { super(message); this.name = 'WriteTokenRequired'; }
}

function headers() {
  const t = token() || memoryToken;
  const hdr = { Accept: 'application/json' };
  if (t) hdr.Authorization = 'Bearer ' + t;
  return hdr;
}

// qs builds "?a=b&..." from an object, skipping empty values; "" when nothing is left.
function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') q.append(k, String(v));
  }
  const s = q.toString();
  return s ? '?' + s : '';
}

// seg encodes one path segment.
const seg = encodeURIComponent;

async function request(url, accept) {
  const hdr = headers();
  if (accept) hdr.Accept = accept;
  let res;
  try {
    res = await fetch(url, { headers: hdr, credentials: 'same-origin', cache: 'no-store' });
  } catch (e) {
    throw new APIError(0, 'cannot reach the server: ' + e.message);
  }
  if (res.status === 401) throw new AuthRequired();
  if (!res.ok) {
    let msg = res.status + ' ' + res.statusText;
    try {
      const body = await res.json();
      if (body && typeof body.error === 'string') msg = body.error;
    } catch { /* not JSON: keep the status line */ }
    throw new APIError(res.status, msg);
  }
  return res;
}

// errorMessage reads the API's {"error": ...} message, or the status line.
async function errorMessage(res) {
  try {
    const body = await res.json();
    if (body && typeof body.error === 'string') return body.error;
  } catch { /* not JSON */ }
  return res.status + ' ' + res.statusText;
}

// write sends a block or an unblock with the write token and returns the decoded answer.
async function write(method, url, body) {
  const hdr = { Accept: 'application/json' };
  const t = writeToken();
  if (t) hdr.Authorization = 'Bearer ' + t;
  if (body !== undefined) hdr['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(url, {
      method, headers: hdr, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new APIError(0, 'cannot reach the server: ' + e.message);
  }
  if (res.status === 401) throw new WriteTokenRequired(await errorMessage(res));
  if (!res.ok) throw new APIError(res.status, await errorMessage(res));
  return res.json();
}

// getJSON fetches path with query params and returns the decoded body.
async function getJSON(path, params) {
  const res = await request(path + qs(params));
  return res.json();
}

// The API's addresses, as docs/api.md lists them.
const partPath = (session, part) => '/api/v1/sessions/' + seg(session) + '/' + seg(part);
export const csvURL = (session, part, params) => partPath(session, part) + '/requests.csv' + qs(params);
export const harURL = (session, part) => partPath(session, part) + '/session.har';

// The answers are read here and nowhere else. Each function below returns the fields
// docs/api.md documents, by the same names, with their types made certain: lists are arrays
// of objects, cursors strings ("" on the last page), counts numbers. The records inside keep
// the field names of records.md, one name per field.

// STAT_LISTS are the count lists of a part's stats, in the order docs/api.md gives them.
export const STAT_LISTS = ['methods', 'statuses', 'client_ips', 'flows', 'routes', 'attack_types'];

const object = (v) => (v && typeof v === 'object' && !Array.isArray(v) ? v : {});
const objects = (v) => (Array.isArray(v) ? v.filter((x) => x && typeof x === 'object') : []);
const cursor = (v) => (typeof v === 'string' ? v : '');
const text = (v) => (typeof v === 'string' ? v : '');

// stats reads the statistics of a whole part: {requests, malicious} and one list of
// {value, count, other} per STAT_LISTS name, empty when the answer lacks it.
function stats(v) {
  const s = object(v);
  const out = { requests: Number(s.requests) || 0, malicious: Number(s.malicious) || 0 };
  for (const name of STAT_LISTS) {
    out[name] = objects(s[name]).map((c) => ({ value: text(c.value), count: Number(c.count) || 0, other: c.other === true }));
  }
  return out;
}

// listSessions fetches one page of session parts, newest first: {sessions, next}.
export async function listSessions(params) {
  const body = object(await getJSON('/api/v1/sessions', params));
  return { sessions: objects(body.sessions), next: cursor(body.next) };
}

const count = (v) => (Number.isFinite(Number(v)) ? Number(v) : 0);

// timeline reads a part's timeline: {from, to, bucket_ms, buckets, marks, per_minute,
// peak_per_minute}; each bucket {requests, malicious, classes: six counts}, each mark {at,
// status, malicious, route}.
function timeline(v) {
  const t = object(v);
  const classes = (c) => [0, 1, 2, 3, 4, 5].map((i) => (Array.isArray(c) ? count(c[i]) : 0));
  return {
    from: text(t.from), to: text(t.to), bucket_ms: Math.max(1, count(t.bucket_ms)),
    buckets: objects(t.buckets).map((b) => ({ requests: count(b.requests), malicious: count(b.malicious), classes: classes(b.classes) })),
    marks: objects(t.marks).map((m) => ({ at: count(m.at), status: count(m.status), malicious: m.malicious === true, route: text(m.route) })),
    per_minute: count(t.per_minute), peak_per_minute: count(t.peak_per_minute),
  };
}

// transitions reads a part's route transitions: {total, top: [{from, to, count}], more,
// more_count}.
function transitions(v) {
  const t = object(v);
  return {
    total: count(t.total), more: count(t.more), more_count: count(t.more_count),
    top: objects(t.top).map((x) => ({ from: text(x.from), to: text(x.to), count: count(x.count) })),
  };
}

// getPart fetches one session part: {session, stats, timeline, transitions, requests, next,
// protection}. The filters in params select the requests; stats, timeline and transitions always
// describe the whole part. protection is the session's block state (blockState), null when the
// server holds no manual blocks.
export async function getPart(session, part, params) {
  const body = object(await getJSON(partPath(session, part), params));
  return {
    session: object(body.session), stats: stats(body.stats), timeline: timeline(body.timeline),
    transitions: transitions(body.transitions), requests: objects(body.requests), next: cursor(body.next),
    protection: body.protection && typeof body.protection === 'object' ? blockState(body.protection) : null,
  };
}

// firstSeen reads a list of values first seen in the period: {total, items: [{kind, value, first}]}.
function firstSeen(v) {
  const l = object(v);
  return { total: count(l.total), items: objects(l.items).map((x) => ({ kind: text(x.kind), value: text(x.value), first: text(x.first) })) };
}

// routeCounts reads a list of routes: [{host, route, is_path, malicious, errors}].
function routeCounts(v) {
  return objects(v).map((r) => ({ host: text(r.host), route: text(r.route), is_path: r.is_path === true,
    malicious: count(r.malicious), errors: count(r.errors) }));
}

// getOverview fetches the overview of a period (params from, to, sessions_by): {from, to, bucket_seconds,
// totals, buckets, routes_by_malicious, routes_by_errors, sessions_by, top_sessions,
// new_users, new_fingerprints}, as docs/api.md describes them.
export async function getOverview(params) {
  const b = object(await getJSON('/api/v1/overview', params));
  const t = object(b.totals);
  return {
    from: text(b.from), to: text(b.to), bucket_seconds: count(b.bucket_seconds),
    totals: { requests: count(t.requests), sessions: count(t.sessions), malicious: count(t.malicious), errors: count(t.errors) },
    buckets: objects(b.buckets).map((x) => ({ start: text(x.start), requests: count(x.requests), sessions: count(x.sessions),
      malicious: count(x.malicious), errors: count(x.errors) })),
    routes_by_malicious: routeCounts(b.routes_by_malicious),
    routes_by_errors: routeCounts(b.routes_by_errors),
    sessions_by: text(b.sessions_by),
    top_sessions: objects(b.top_sessions).map((x) => ({ session: text(x.session), part: text(x.part), user: text(x.user),
      risk: count(x.risk), malicious: count(x.malicious), errors: count(x.errors), last_seen: text(x.last_seen) })),
    new_users: firstSeen(b.new_users),
    new_fingerprints: firstSeen(b.new_fingerprints),
  };
}

// blockState reads a block answer: {block, audit}, block null when none is in force; each
// audit entry {at, by, action, kind, id, until, reason} as strings.
function blockState(v) {
  const b = object(v);
  const block = b.block && typeof b.block === 'object' && !Array.isArray(b.block) ? b.block : null;
  const audit = objects(b.audit).map((e) => ({
    at: text(e.at), by: text(e.by), action: text(e.action), kind: text(e.kind), id: text(e.id),
    until: text(e.until), reason: text(e.reason),
  }));
  return {
    block: block && { until: text(block.until), reason: text(block.reason), by: text(block.by), at: text(block.at) },
    audit,
  };
}

// blockPath is the API path of the block of a session or a user (kind "session" or "user"). A
// user named "." or ".." goes in the query: the browser would resolve such a path segment
// away, escaped or not.
const blockPath = (kind, id) => kind === 'user' && (id === '.' || id === '..')
  ? '/api/v1/users/block?user=' + seg(id)
  : '/api/v1/' + (kind === 'user' ? 'users' : 'sessions') + '/' + seg(id) + '/block';

// getBlock fetches the block state of a session or a user (kind "session" or "user").
export async function getBlock(kind, id) {
  return blockState(await getJSON(blockPath(kind, id)));
}

// setBlock blocks a session or a user for a duration ("1h") with a reason, with the write
// token; it returns the new block state.
export async function setBlock(kind, id, duration, reason) {
  return blockState(await write('POST', blockPath(kind, id), { for: duration, reason }));
}

// liftBlock unblocks a session or a user with the write token; it returns the new state.
export async function liftBlock(kind, id) {
  return blockState(await write('DELETE', blockPath(kind, id)));
}

// findRequest fetches the session part a request belongs to: {session, part}.
export async function findRequest(id) {
  const body = object(await getJSON('/api/v1/requests/' + seg(id)));
  return { session: text(body.session), part: text(body.part) };
}

// needsFetchDownload says whether a plain link cannot download (a token must be sent).
export function needsFetchDownload() { return !!(token() || memoryToken); }

// download fetches url with the token and saves it under filename; accept is the type asked
// for (the CSV by default).
export async function download(url, filename, accept = 'text/csv') {
  const res = await request(url, accept);
  const blob = await res.blob();
  const href = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = href;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60000);
}
