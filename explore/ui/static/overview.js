// The overview, the landing view: a period's requests and sessions over time, malicious
// requests and errors over time, the routes with most of them, the sessions with most
// malicious requests or the riskiest ones, and the users and user agents first seen in it.
// Every item links to the session list (or the session part) filtered to it.
import { h, fmtInt, fmtTime, riskClass } from './dom.js';
import { getOverview } from './api.js';
import { PERIODS, SESSIONS_BY, href } from './state.js';
import { timeChart, durationText } from './chart.js';

const PERIOD_LABELS = { '1h': 'Last hour', '24h': 'Last 24 hours', '7d': 'Last 7 days' };

// iso writes a time in milliseconds as RFC 3339 in UTC, without a fraction when it has none.
const iso = (ms) => new Date(ms).toISOString().replace('.000Z', 'Z');

// period is the overview's [from, to): its own from and to, or one of PERIODS ending now.
function period(st) {
  if (st.list.from && st.list.to) return { from: st.list.from, to: st.list.to, custom: true };
  const to = Date.now();
  return { from: iso(to - PERIODS[st.period || '24h']), to: iso(to), custom: false };
}

// lastIn is the list's inclusive end for the half-open [.., end): one millisecond before it.
const lastIn = (end) => iso(new Date(end).getTime() - 1);

// link makes an anchor that opens target (a view state) in the page, or in a new tab as links do.
function link(target, nav, props, ...children) {
  return h('a', {
    ...props, href: href(target),
    onclick: (ev) => {
      if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
      ev.preventDefault();
      nav(target);
    },
  }, ...children);
}

const listOf = (list) => ({ view: 'list', list, session: '', part: '', inPart: {} });

function tile(id, label, value, target, nav, cls) {
  return h('li', { class: 'tile ' + (cls || '') },
    link(target, nav, { id }, h('span', { class: 'tile-value', text: fmtInt(value) }), h('span', { class: 'tile-label', text: label })));
}

// section is a card with a heading and a table of rows, or a line saying there is none.
function section(id, title, head, rows, empty, note, tools) {
  return h('section', { class: 'card overview-list', id, 'aria-labelledby': id + '-h' },
    tools ? h('div', { class: 'title-row' }, h('h2', { id: id + '-h', text: title }), tools) : h('h2', { id: id + '-h', text: title }),
    rows.length === 0
      ? h('p', { class: 'muted', text: empty })
      : h('div', { class: 'table-wrap' }, h('table', { class: 'grid' },
        h('thead', {}, h('tr', {}, head.map(([t, cls]) => h('th', { scope: 'col', class: cls, text: t })))),
        h('tbody', {}, rows))),
    note ? h('p', { class: 'muted small', text: note }) : null);
}

function routeRows(routes, key, extra, whole, nav) {
  return routes.map((r) => {
    const f = { ...whole, host: r.host, ...extra };
    // A request without a route is counted under its path, which the list takes as a prefix.
    if (r.is_path) f.path = r.route; else f.route = r.route;
    return h('tr', { dataset: { route: r.route } },
      h('td', { class: 'small', text: r.host }),
      h('td', { class: 'mono route-cell' }, link(listOf(f), nav, { class: 'route-link', title: r.route }, r.route),
        r.is_path ? h('span', { class: 'muted small', text: ' (path)' }) : null),
      h('td', { class: 'num' + (key === 'malicious' ? ' strong' : ''), text: fmtInt(r.malicious) }),
      h('td', { class: 'num' + (key === 'errors' ? ' strong' : ''), text: fmtInt(r.errors) }));
  });
}

// SESSIONS_TITLES name the lists of top sessions, by order (SESSIONS_BY).
const SESSIONS_TITLES = {
  malicious: ['Most malicious', 'Sessions with most malicious requests', 'No session sent a malicious request in this period.'],
  risk: ['Riskiest', 'Riskiest sessions', 'No session of this period has a risk score.'],
};

// FINGERPRINT_FILTERS are the session list's filters for each kind of new fingerprint.
const FINGERPRINT_FILTERS = { user_agent: 'ua', ja3: 'ja3', ja4: 'ja4' };
const FINGERPRINT_KINDS = { user_agent: 'User-Agent', ja3: 'JA3', ja4: 'JA4' };

function newNote(l, what) {
  if (l.total <= l.items.length) return '';
  return fmtInt(l.total) + ' ' + what + ' in all; the latest ' + l.items.length + ' are shown.';
}

// renderOverview draws the overview into main.
export async function renderOverview(main, st, nav, isCurrent) {
  const p = period(st);
  const by = st.sessionsBy || SESSIONS_BY[0];
  const o = await getOverview({ from: p.from, to: p.to, sessions_by: by === SESSIONS_BY[0] ? '' : by });
  if (!isCurrent()) return;
  const whole = { from: o.from || p.from, to: lastIn(o.to || p.to) };

  const picker = h('nav', { class: 'periods', 'aria-label': 'Period' }, Object.keys(PERIODS).map((k) => {
    const current = !p.custom && (st.period || '24h') === k;
    return link({ view: 'overview', list: {}, period: k, sessionsBy: by }, nav,
      { class: 'button' + (current ? ' current' : ''), 'aria-current': current ? 'true' : null, dataset: { period: k } }, PERIOD_LABELS[k]);
  }));
  const t = o.totals;
  const tiles = h('ul', { class: 'tiles', id: 'overview-totals' },
    tile('total-requests', 'Requests', t.requests, listOf({ ...whole }), nav),
    tile('total-sessions', 'Session parts', t.sessions, listOf({ ...whole }), nav),
    tile('total-malicious', 'Malicious requests', t.malicious, listOf({ ...whole, malicious: 'true' }), nav, t.malicious > 0 ? 'danger' : ''),
    tile('total-errors', 'Errors (5xx)', t.errors, listOf({ ...whole, status: '5xx' }), nav, t.errors > 0 ? 'warn' : ''));

  const width = o.bucket_seconds * 1000;
  const bucketLink = (extra) => (b) => {
    const start = new Date(b.start).getTime();
    const from = Math.max(start, new Date(o.from).getTime());
    const to = Math.min(start + width, new Date(o.to).getTime());
    const target = listOf({ from: iso(from), to: iso(to - 1), ...extra });
    return { href: href(target), open: () => nav(target) };
  };
  const traffic = timeChart({
    id: 'chart-traffic', title: 'Requests and sessions', buckets: o.buckets, bucketSeconds: o.bucket_seconds,
    series: [{ key: 'requests', label: 'Requests', cls: 's-requests' }, { key: 'sessions', label: 'Session parts', cls: 's-sessions' }],
    link: bucketLink({}),
  });
  const bad = timeChart({
    id: 'chart-bad', title: 'Malicious requests and errors', buckets: o.buckets, bucketSeconds: o.bucket_seconds,
    series: [{ key: 'malicious', label: 'Malicious requests', cls: 's-malicious' }, { key: 'errors', label: 'Errors (5xx)', cls: 's-errors' }],
    link: bucketLink({ malicious: 'true' }),
  });

  // A session opens on its malicious requests of the period (most malicious), or on all its
  // requests of the period (riskiest: its risk comes from more than attacks).
  const byRisk = by === 'risk';
  const sessionsList = byRisk ? { ...whole, min_risk: '1' } : { ...whole, malicious: 'true' };
  const sessionsIn = byRisk ? { from: whole.from, to: whole.to } : { from: whole.from, to: whole.to, malicious: 'true' };
  const sessions = o.top_sessions.map((x) => h('tr', { dataset: { session: x.session, part: x.part } },
    h('td', {}, link({ view: 'part', list: sessionsList, session: x.session, part: x.part, inPart: sessionsIn }, nav,
      { class: 'session-link' }, h('span', { class: 'mono', text: x.session }), h('span', { class: 'part', text: x.part }))),
    h('td', { class: 'user', title: x.user, text: x.user }),
    h('td', { class: 'num risk-cell' + (byRisk ? ' strong' : '') },
      x.risk > 0 ? h('span', { class: riskClass(x.risk), text: fmtInt(x.risk) }) : '0'),
    h('td', { class: 'num' + (byRisk ? '' : ' strong'), text: fmtInt(x.malicious) }),
    h('td', { class: 'num', text: fmtInt(x.errors) }),
    h('td', { class: 'nowrap small', text: fmtTime(x.last_seen) })));
  const orders = h('nav', { class: 'periods sessions-by', 'aria-label': 'Order of the sessions' }, SESSIONS_BY.map((k) => {
    const current = by === k;
    return link({ view: 'overview', list: p.custom ? { from: p.from, to: p.to } : {}, period: st.period, sessionsBy: k }, nav,
      { class: 'button small' + (current ? ' current' : ''), 'aria-current': current ? 'true' : null, dataset: { sessionsBy: k } },
      SESSIONS_TITLES[k][0]);
  }));
  const users = o.new_users.items.map((u) => h('tr', { dataset: { user: u.value } },
    h('td', { class: 'user' }, link(listOf({ from: u.first, to: whole.to, user: u.value }), nav, { class: 'user-link' }, u.value)),
    h('td', { class: 'nowrap small', text: fmtTime(u.first) })));
  // Each new client opens the list of the parts that sent it since its first request.
  const agents = o.new_fingerprints.items.map((f) => {
    const filter = FINGERPRINT_FILTERS[f.kind];
    return h('tr', { dataset: { kind: f.kind } },
      h('td', { class: 'ua' }, filter && f.value
        ? link(listOf({ from: f.first, to: whole.to, [filter]: f.value }), nav, { class: 'ua-link', title: f.value }, f.value)
        : f.value),
      h('td', { class: 'small muted nowrap', text: FINGERPRINT_KINDS[f.kind] || f.kind }),
      h('td', { class: 'nowrap small', text: fmtTime(f.first) }));
  });

  main.replaceChildren(
    h('section', { class: 'card' },
      h('div', { class: 'title-row' }, h('h1', { text: 'Overview' }), picker),
      h('p', { class: 'muted', id: 'overview-period', text: fmtTime(o.from) + ' – ' + fmtTime(o.to) + ' UTC, in buckets of ' + durationText(o.bucket_seconds) + '.' }),
      tiles),
    h('section', { class: 'card' }, traffic),
    h('section', { class: 'card' }, bad),
    h('div', { class: 'overview-grid' },
      section('routes-malicious', 'Routes by malicious requests', [['Host'], ['Route'], ['Malicious', 'num'], ['Errors', 'num']],
        routeRows(o.routes_by_malicious, 'malicious', { malicious: 'true' }, whole, nav), 'No malicious request in this period.'),
      section('routes-errors', 'Routes by errors (5xx)', [['Host'], ['Route'], ['Malicious', 'num'], ['Errors', 'num']],
        routeRows(o.routes_by_errors, 'errors', { status: '5xx' }, whole, nav), 'No server error in this period.'),
      section('top-sessions', SESSIONS_TITLES[by][1], [['Session / part'], ['User'], ['Risk', 'num'], ['Malicious', 'num'], ['Errors', 'num'], ['Last seen']],
        sessions, SESSIONS_TITLES[by][2], '', orders),
      section('new-users', 'New users', [['User'], ['First request']], users, 'No user was seen for the first time in this period.',
        newNote(o.new_users, 'new users')),
      section('new-fingerprints', 'New clients (user agents)', [['User-Agent'], ['Kind'], ['First request']], agents,
        'No user agent was seen for the first time in this period.', newNote(o.new_fingerprints, 'new user agents'))));
}
