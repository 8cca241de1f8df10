// Client of the JSON API on the same origin. The bearer token, when the server asks for one, lives
// in sessionStorage for this tab only and is sent as a header; it never goes into a URL.

const TOKEN_KEY = 'apisessions.token';

// AuthRequired is thrown when the API answers 401.
export class AuthRequired extends Error {
  constructor() { super('the API needs a token'); this.name = 'AuthRequired'; }
}

// APIError carries the API's {"error": ...} message and the HTTP status.
export class APIError extends Error {
  constructor(status, message) { super(message); this.name = 'APIError'; this.status = status; }
}

export function token() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

export function setToken(v) {
  try {
    if (v) sessionStorage.setItem(TOKEN_KEY, v); else sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled: the token lasts until the page reloads */ memoryToken = v; }
}

let memoryToken = '';

function headers() {
  const t = token() || memoryToken;
  const hdr = { Accept: 'application/json' };
  if (t) hdr.Authorization = 'Bearer ' + t;
  return hdr;
}

// qs builds "?a=b&..." from an object, skipping empty values; "" when nothing is left.
export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') q.append(k, String(v));
  }
  const s = q.toString();
  return s ? '?' + s : '';
}

// seg encodes one path segment.
export const seg = encodeURIComponent;

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

// getJSON fetches path with query params and returns the decoded body.
export async function getJSON(path, params) {
  const res = await request(path + qs(params));
  return res.json();
}

// sessionsURL, partURL and csvURL build the API addresses of interfaces.md.
export const sessionsURL = (params) => '/api/v1/sessions' + qs(params);
export const partPath = (session, part) => '/api/v1/sessions/' + seg(session) + '/' + seg(part);
export const csvURL = (session, part, params) => partPath(session, part) + '/requests.csv' + qs(params);
export const requestPath = (id) => '/api/v1/requests/' + seg(id);

// needsFetchDownload says whether a plain link cannot download (a token must be sent).
export function needsFetchDownload() { return !!(token() || memoryToken); }

// download fetches url with the token and saves it under filename.
export async function download(url, filename) {
  const res = await request(url, 'text/csv');
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
