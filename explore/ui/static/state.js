// The whole view lives in the page URL, so a copied link reproduces it:
//   the overview (the landing view) with no parameter, period=1h|7d, or view=overview with
//   from and to for a period of its own; sessions_by=risk ranks its top sessions by risk,
//   the session list with its filters as plain query parameters (user=alice&status=5xx), or
//   view=sessions when it has none,
//   the open session part as session=...&part=...,
//   in-session filters with the prefix "in." (in.method=POST).

// LIST_FILTERS are the filters of GET /api/v1/sessions, in form order.
export const LIST_FILTERS = ['from', 'to', 'user', 'role', 'flow', 'ip', 'request_id', 'method',
  'status', 'host', 'path', 'route', 'malicious', 'ua', 'ja3', 'ja4', 'min_risk'];

// PART_FILTERS are the filters inside one session part (and its CSV).
export const PART_FILTERS = ['from', 'to', 'method', 'status', 'ip', 'path', 'route', 'flow',
  'malicious', 'request_id'];

const IN = 'in.';

// LABELS name each filter for people.
export const LABELS = {
  from: 'From (UTC)', to: 'To (UTC)', user: 'User', role: 'Role', flow: 'Business flow',
  ip: 'Client IP', request_id: 'Request id', method: 'Method', status: 'Status', host: 'Host',
  path: 'Path prefix', route: 'Route', malicious: 'Malicious only', ua: 'User agent', ja3: 'JA3', ja4: 'JA4',
  min_risk: 'Minimum risk',
};

// listOf is the state of the session list filtered to the parts that share one value: the
// target of a pivot.
export function listOf(name, value) {
  return { view: 'list', list: { [name]: value }, session: '', part: '', inPart: {} };
}

// PERIODS are the overview's periods, by their name in the URL; 24h is the default.
export const PERIODS = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3 };

// SESSIONS_BY are the overview's orders of its top sessions (the API's sessions_by); the first
// is the default, left out of the URL.
export const SESSIONS_BY = ['malicious', 'risk'];

// read parses a URL search string into {view, list, session, part, inPart, limit, period,
// sessionsBy}; view is 'overview', 'list' or 'part'.
export function read(search) {
  const q = new URLSearchParams(search);
  const list = {}, inPart = {};
  for (const k of LIST_FILTERS) {
    const v = q.get(k);
    if (v) list[k] = v;
  }
  for (const k of PART_FILTERS) {
    const v = q.get(IN + k);
    if (v) inPart[k] = v;
  }
  const session = q.get('session') || '', part = q.get('part') || '';
  // limit sets the page size of the list (the API's default when absent).
  const limit = /^[1-9][0-9]{0,3}$/.test(q.get('limit') || '') ? q.get('limit') : '';
  const period = Object.hasOwn(PERIODS, q.get('period') || '') ? q.get('period') : '';
  const sessionsBy = SESSIONS_BY.includes(q.get('sessions_by')) ? q.get('sessions_by') : '';
  let view = 'list';
  if (session) view = 'part';
  else if (q.get('view') === 'overview' || (q.get('view') !== 'sessions' && Object.keys(list).length === 0 && !limit)) view = 'overview';
  return { view, list, session, part: session ? part : '', inPart: session ? inPart : {}, limit, period, sessionsBy };
}

// write renders a state as a search string ("?..." or "").
export function write(st) {
  const q = new URLSearchParams();
  if (st.view === 'overview' && !st.session) {
    // The overview's own period (from and to), or one of PERIODS ending now.
    if (st.list && st.list.from && st.list.to) {
      q.set('view', 'overview');
      q.set('from', st.list.from);
      q.set('to', st.list.to);
    } else if (st.period && st.period !== '24h') q.set('period', st.period);
    if (st.sessionsBy && st.sessionsBy !== SESSIONS_BY[0]) q.set('sessions_by', st.sessionsBy);
    const s = q.toString();
    return s ? '?' + s : '';
  }
  for (const k of LIST_FILTERS) if (st.list[k]) q.set(k, st.list[k]);
  if (st.limit && !st.session) q.set('limit', st.limit);
  if (st.session) {
    q.set('session', st.session);
    q.set('part', st.part);
    for (const k of PART_FILTERS) if (st.inPart[k]) q.set(IN + k, st.inPart[k]);
  }
  // The list without filters is not the landing view: it names itself.
  if (!st.session && q.size === 0) q.set('view', 'sessions');
  const s = q.toString();
  return s ? '?' + s : '';
}

// carry keeps the list filters that also apply inside a session part: a part opened from a
// filtered list shows the same kind of requests until "Show all requests".
export function carry(list) {
  const out = {};
  for (const k of PART_FILTERS) if (list[k]) out[k] = list[k];
  return out;
}

// href is the page link of a state, relative to the page.
export function href(st) {
  return location.pathname + write(st);
}

// toInputTime turns an RFC 3339 time into the value of a datetime-local input, in UTC.
export function toInputTime(s) {
  if (!s) return '';
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString().slice(0, 19);
}

// fromInputTime turns a datetime-local value (read as UTC) into RFC 3339.
export function fromInputTime(v) {
  if (!v) return '';
  const full = v.length === 16 ? v + ':00' : v;
  const d = new Date(full + 'Z');
  return Number.isNaN(d.getTime()) ? '' : d.toISOString().replace('.000Z', 'Z');
}
