// One session part: header, statistics of the whole part, in-session filters and the timeline.
import { h, fmtInt, fmtMs, fmtPct, fmtTime, fmtClock, statusClass, str, riskClass } from './dom.js';
import { getPart, getBlock, csvURL, harURL, download, needsFetchDownload, STAT_LISTS } from './api.js';
import { openBlockDialog } from './block.js';
import { PART_FILTERS, carry, href } from './state.js';
import { filterForm, chips } from './filters.js';
import { pivot } from './pivot.js';
import { activitySection } from './activity.js';

// STAT_TITLES name the stats lists (STAT_LISTS) for people.
const STAT_TITLES = {
  methods: 'Methods', statuses: 'Statuses', client_ips: 'Client IPs', flows: 'Business flows',
  routes: 'Routes', attack_types: 'Attack types',
};

// entries turns one stats list into [label, count] rows, largest count first.
function entries(list) {
  return list.map((c) => [c.other ? '(other)' : c.value, c.count])
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
}

const MAX_STAT_ROWS = 12;

function statCard(title, list, total, id) {
  const rows = list.slice(0, MAX_STAT_ROWS).map(([k, n]) => {
    const bar = h('span', { class: 'bar' });
    const pct = total > 0 ? Math.min(100, (n * 100) / total) : 0;
    bar.style.width = pct.toFixed(1) + '%';
    return h('tr', {},
      h('td', { class: 'stat-key', title: k, text: k === '' ? '(none)' : k }),
      h('td', { class: 'num', text: fmtInt(n) }),
      h('td', { class: 'num pct', text: fmtPct(n, total) }),
      h('td', { class: 'bar-cell' }, h('span', { class: 'bar-track' }, bar)));
  });
  const rest = list.length > MAX_STAT_ROWS
    ? h('p', { class: 'muted small', text: '+' + (list.length - MAX_STAT_ROWS) + ' more' }) : null;
  return h('div', { class: 'stat', id },
    h('h3', { text: title }),
    list.length === 0 ? h('p', { class: 'muted small', text: 'none' })
      : h('table', { class: 'stat-table' }, h('tbody', {}, rows)),
    rest);
}

function statsSection(stats) {
  const total = stats.requests;
  const cards = STAT_LISTS.map((name) => statCard(STAT_TITLES[name], entries(stats[name]), total, 'stat-' + name));
  return h('section', { class: 'card', id: 'stats' },
    h('h2', {}, 'Statistics ', h('span', { class: 'muted small', text: 'whole part, ' + fmtInt(total) + ' requests' })),
    h('div', { class: 'stats-grid' }, cards));
}

function dl(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== '')
    .map(([k, v, cls]) => h('div', { class: 'fact' }, h('dt', { text: k }), h('dd', { class: cls || '' }, v))));
}

function header(session, nav) {
  const key = session.key && typeof session.key === 'object' ? session.key : {};
  const ips = Array.isArray(session.ips) ? session.ips.map(str) : [];
  const uas = Array.isArray(session.user_agents) ? session.user_agents.map(str) : [];
  const state = session.final ? 'ended' + (session.end_reason ? ' (' + str(session.end_reason) + ')' : '') : 'active';
  return dl([
    ['Grouping key', h('span', {}, h('span', { class: 'key-source', text: str(key.source) }), ' ', h('mark', { class: 'key-name', text: str(key.name) }))],
    ['User', h('span', { id: 'part-user' }, str(session.user) ? pivot('user', session.user, nav) : '–')],
    ['Role', str(session.role) ? pivot('role', session.role, nav) : '–'],
    ['First seen', fmtTime(session.first_seen)],
    ['Last seen', fmtTime(session.last_seen)],
    ['Requests', fmtInt(session.requests)],
    ['Malicious', fmtInt(session.malicious), Number(session.malicious) > 0 ? 'danger-text' : ''],
    ['Risk', riskFact(session)],
    ['Bytes in / out', fmtInt(session.bytes_in) + ' / ' + fmtInt(session.bytes_out)],
    ['Linked values', Number(session.linked) > 0 ? fmtInt(session.linked) : ''],
    ['State', state],
    ['Client IPs', h('ul', { class: 'plain mono', id: 'part-ips' }, ips.map((v) => h('li', {}, pivot('ip', v, nav))))],
    ['User agents', h('ul', { class: 'plain', id: 'part-user-agents' }, uas.map((v) => h('li', { class: 'ua' }, pivot('ua', v, nav))))],
  ]);
}

// riskFact shows the part's risk score and the signals that make it, largest first.
function riskFact(session) {
  const reasons = Array.isArray(session.risk_reasons) ? session.risk_reasons.filter((r) => r && typeof r === 'object') : [];
  return h('span', { id: 'part-risk' },
    h('span', { class: riskClass(session.risk), id: 'part-risk-score', text: fmtInt(Number(session.risk) || 0) }),
    reasons.length ? h('ul', { class: 'plain small', id: 'part-risk-reasons' }, reasons.map((r) =>
      h('li', { dataset: { signal: str(r.signal) } }, h('span', { text: str(r.signal) }), ' ',
        h('span', { class: 'muted', text: '+' + (Number.isFinite(Number(r.points)) ? String(Number(r.points)) : '?') })))) : null);
}

function paramsCell(params, key) {
  if (!params || typeof params !== 'object') return '';
  const keyName = key && key.source === 'param' ? str(key.name) : null;
  return h('ul', { class: 'params' }, Object.entries(params).map(([k, v]) => {
    const isKey = k === keyName;
    const val = str(v);
    return h('li', { class: isKey ? 'param grouping' : 'param', title: isKey ? 'grouping key of this request' : null },
      h(isKey ? 'mark' : 'span', { class: 'param-name', text: k }), '=',
      h('span', { class: 'param-value', title: val, text: val }));
  }));
}

// continuedText says which session a request's value continued from (stitching), or ''.
function continuedText(r) {
  const c = r.continued_from && typeof r.continued_from === 'object' ? r.continued_from : null;
  if (!c) return '';
  return 'continued from ' + str(c.session) + (c.kind ? ' (' + str(c.kind) + ')' : '');
}

function attackText(r) {
  const a = r.attack && typeof r.attack === 'object' ? r.attack : null;
  if (!a) return r.malicious ? 'malicious' : '';
  const types = Array.isArray(a.types) ? a.types.map(str).join(', ') : '';
  return types || str(a.source) || 'malicious';
}

// verdict returns the request's protection verdict as a text, "" when none, and whether it was
// only recorded (dry run).
function verdict(r) {
  const p = r.protection && typeof r.protection === 'object' ? r.protection : null;
  if (!p) return ['', false];
  return [str(p.action) + ' · ' + str(p.rule) + (p.dry_run ? ' (dry run)' : ''), p.dry_run === true];
}

// blockLine says whether a session or user is blocked, and offers to block or unblock it.
function blockLine(kind, id, state, refresh) {
  const b = state.block;
  const label = kind === 'user' ? 'user' : 'session';
  const act = (mode) => async () => {
    const next = await openBlockDialog(mode, kind, id);
    if (next) refresh();
  };
  return h('div', { class: 'block-line', id: 'block-' + kind },
    b ? h('span', { class: 'danger-text block-state' },
      'The ' + label + ' is blocked until ' + fmtTime(b.until) + ' by ' + (b.by || '–') + (b.reason ? ': ' + b.reason : ''))
      : h('span', { class: 'muted block-state', text: 'The ' + label + ' is not blocked.' }),
    ' ',
    b ? h('button', { type: 'button', id: 'unblock-' + kind, text: 'Unblock ' + label, onclick: act('unblock') })
      : h('button', { type: 'button', id: 'block-' + kind + '-button', class: 'danger', text: 'Block ' + label + '…', onclick: act('block') }));
}

// protectionSection shows the manual blocks of the part's session and user, the buttons that
// set and lift them, and the audit log of both (who, when, what, why), newest first. It is
// absent when the server holds no manual blocks (protection null).
function protectionSection(p, session, userState, refresh) {
  if (!p) return null;
  const sid = str(session.session), user = str(session.user);
  const audit = [...p.audit, ...(userState ? userState.audit : [])]
    .sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0));
  return h('section', { class: 'card', id: 'protection' },
    h('h2', { text: 'Protection' }),
    blockLine('session', sid, p, refresh),
    user && userState ? blockLine('user', user, userState, refresh) : null,
    h('table', { class: 'audit grid', id: 'audit' },
      h('caption', { class: 'muted small', text: audit.length ? 'Manual actions, newest first' : 'No manual action yet' }),
      audit.length ? h('thead', {}, h('tr', {}, ['When (UTC)', 'What', 'Who', 'Until', 'Why'].map((t) => h('th', { scope: 'col', text: t })))) : null,
      h('tbody', {}, audit.map((e) => h('tr', { dataset: { action: e.action, kind: e.kind } },
        h('td', { class: 'nowrap', text: fmtTime(e.at) }),
        h('td', { text: e.action + ' ' + e.kind + (e.kind === 'user' ? ' ' + e.id : '') }),
        h('td', { text: e.by }),
        h('td', { class: 'nowrap', text: e.until ? fmtTime(e.until) : '' }),
        h('td', { text: e.reason }))))));
}

function details(r, nav) {
  const a = r.attack && typeof r.attack === 'object' ? r.attack : null;
  const headers = a && a.headers && typeof a.headers === 'object' ? Object.entries(a.headers) : [];
  return h('div', { class: 'details' },
    dl([
      ['Request id', h('span', { class: 'mono rid', text: str(r.request_id) })],
      ['Time', fmtTime(r.time)],
      ['URL', h('span', { class: 'mono', text: str(r.scheme) + '://' + str(r.host) + str(r.path) + (str(r.query) ? '?' + str(r.query) : '') })],
      ['Query', str(r.query) && h('span', { class: 'mono query-full', text: str(r.query) })],
      ['Route', pivot('route', r.route, nav, undefined, 'mono')],
      ['Client IP', pivot('ip', r.client_ip, nav, undefined, 'mono')],
      ['User agent', pivot('ua', r.user_agent, nav, undefined, 'ua')],
      ['JA3', str(r.ja3) && pivot('ja3', r.ja3, nav, undefined, 'mono')],
      ['JA4', str(r.ja4) && pivot('ja4', r.ja4, nav, undefined, 'mono')],
      ['Request / response bytes', fmtInt(r.request_bytes) + ' / ' + fmtInt(r.response_bytes)],
      ['Partial', r.partial ? 'yes: the stream ended before the response completed' : ''],
      ['Protection', verdict(r)[0]],
      ['Continued from', continuedText(r) && h('span', { class: 'mono continued', text: continuedText(r).replace(/^continued from /, '') })],
      ['Values linked', Number(r.linked) > 0 ? fmtInt(r.linked) : ''],
      ['Attack', a ? [str(a.source), Array.isArray(a.types) ? a.types.map(str).join(', ') : '',
        Array.isArray(a.rule_ids) && a.rule_ids.length ? 'rules ' + a.rule_ids.map(str).join(', ') : '']
        .filter(Boolean).join(' · ') : ''],
    ]),
    headers.length ? h('table', { class: 'kv' }, h('caption', { text: 'Request headers' }),
      h('tbody', {}, headers.map(([k, v]) => h('tr', {}, h('th', { scope: 'row', text: k }), h('td', { text: str(v) }))))) : null,
    a && a.body ? h('div', {}, h('h4', { text: 'Request body' + (a.body_truncated ? ' (truncated)' : '') }),
      h('pre', { class: 'body', text: str(a.body) })) : null);
}

function timelineRow(r, cols, nav) {
  const key = r.key && typeof r.key === 'object' ? r.key : {};
  const flows = Array.isArray(r.flows) ? r.flows.map(str) : [];
  const attack = attackText(r);
  const [vtext, vdry] = verdict(r);
  const tr = h('tr', { class: 'req' + (r.malicious ? ' malicious' : ''), tabindex: '0', dataset: { requestId: str(r.request_id) } },
    h('td', { class: 'nowrap mono', title: fmtTime(r.time), text: fmtClock(r.time) }),
    h('td', {}, h('span', { class: 'method', text: str(r.method) })),
    h('td', { class: 'path' }, h('span', { class: 'mono', title: str(r.host) + str(r.path), text: str(r.path) }),
      str(r.query) ? h('span', { class: 'mono query', title: '?' + str(r.query), text: '?' + str(r.query) }) : null,
      r.route && r.route !== r.path ? h('div', { class: 'route mono' }, pivot('route', r.route, nav)) : null,
      attack ? h('span', { class: 'badge danger', text: attack }) : null,
      vtext ? h('span', { class: 'badge ' + (vdry ? 'dry' : 'verdict'), title: 'protection verdict', text: vtext }) : null),
    h('td', {}, h('span', { class: 'status ' + statusClass(r.status), text: r.status ? str(r.status) : '—' })),
    h('td', { class: 'num', text: fmtMs(r.duration_ms) }),
    h('td', { class: 'num', title: 'request ' + fmtInt(r.request_bytes) + ' B, response ' + fmtInt(r.response_bytes) + ' B', text: fmtInt(r.response_bytes) }),
    r.claimed_user && !r.user
      ? h('td', { class: 'user claimed', title: 'claimed by a request answered ' + str(r.status) + ': ' + str(r.claimed_user) }, h('span', { class: 'tag', text: 'claimed' }), ' ', str(r.claimed_user))
      : h('td', { class: 'user', title: str(r.user) }, pivot('user', r.user, nav)),
    h('td', { class: 'small' }, flows.map((f) => pivot('flow', f, nav, undefined, 'tag'))),
    h('td', { class: 'small mono' }, h('span', { class: 'key-source', text: str(key.source) }), ' ', h('span', { class: 'key-name', text: str(key.name) }),
      continuedText(r) ? h('div', { class: 'continued', title: 'the value this request carried was linked to this session', text: continuedText(r) }) : null),
    h('td', { class: 'small' }, paramsCell(r.params, key)));
  const detailRow = h('tr', { class: 'detail', hidden: true }, h('td', { colspan: String(cols) }, details(r, nav)));
  const toggle = () => { detailRow.hidden = !detailRow.hidden; tr.classList.toggle('open', !detailRow.hidden); };
  // A click that ends a text selection is copying, not opening.
  tr.addEventListener('click', () => { if (!window.getSelection().toString()) toggle(); });
  tr.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); toggle(); } });
  return [tr, detailRow];
}

function shareBox(link) {
  const input = h('input', { id: 'share-link', type: 'text', readonly: 'readonly', value: link, 'aria-label': 'Link to this view', spellcheck: 'false' });
  const note = h('span', { id: 'copy-status', class: 'muted small', role: 'status' });
  const copy = h('button', {
    type: 'button', id: 'copy-link', text: 'Copy link',
    onclick: async () => {
      input.value = new URL(location.href).href;
      input.select();
      try {
        await navigator.clipboard.writeText(input.value);
        note.textContent = 'Copied.';
      } catch {
        note.textContent = 'Select the link and copy it.';
      }
    },
  });
  return h('div', { class: 'share' }, copy, input, note);
}

// csvButton is the CSV download of the filtered part: a plain link, or a fetch that sends the
// token when the API asks for one.
function csvButton(st, main) {
  const fileName = (st.session + '-' + st.part + '.csv').replace(/[^A-Za-z0-9._-]/g, '_');
  const csv = csvURL(st.session, st.part, st.inPart);
  return h('a', {
    id: 'download-csv', class: 'button', href: csv, download: fileName,
    onclick: (ev) => {
      if (!needsFetchDownload()) return;
      ev.preventDefault();
      download(csv, fileName).catch((e) => main.dispatchEvent(new CustomEvent('apierror', { detail: e })));
    },
  }, 'Download CSV');
}

// harButton downloads the whole part as HAR, to hand it over (docs/ui.md), as csvButton does.
function harButton(st, main) {
  const fileName = (st.session + '-' + st.part + '.har').replace(/[^A-Za-z0-9._-]/g, '_');
  const har = harURL(st.session, st.part);
  return h('a', {
    id: 'download-har', class: 'button', href: har, download: fileName,
    onclick: (ev) => {
      if (!needsFetchDownload()) return;
      ev.preventDefault();
      download(har, fileName, 'application/json').catch((e) => main.dispatchEvent(new CustomEvent('apierror', { detail: e })));
    },
  }, 'Download HAR');
}

const TIMELINE_COLUMNS = ['Time (UTC)', 'Method', 'Path', 'Status', 'Time, ms', 'Size, bytes', 'User', 'Flows', 'Key', 'Params'];

// timeline draws the first page of a part's requests and fetches the following ones on
// demand: a long part comes in pages, and the API's cursor names the next one. It returns the
// status line, the table and the "Load more" button.
function timeline(st, first, isCurrent, main, nav) {
  const cols = TIMELINE_COLUMNS.length;
  const tbody = h('tbody', { id: 'request-rows' });
  for (const r of first.requests) tbody.append(...timelineRow(r, cols, nav));
  let shown = first.requests.length;
  const more = h('button', { type: 'button', id: 'load-more-requests', text: 'Load more requests', hidden: true });
  const counter = h('p', { id: 'timeline-status', class: 'muted' });
  const total = Number(first.session.requests) || 0;
  const filtered = Object.keys(st.inPart).length > 0;
  const count = (cursor) => {
    counter.textContent = cursor
      ? fmtInt(shown) + ' requests shown, more follow.'
      : filtered
        ? fmtInt(shown) + ' of ' + fmtInt(total) + ' requests match the filters.'
        : fmtInt(shown) + (shown === 1 ? ' request' : ' requests') + ' in time order.';
  };
  const paginate = (cursor) => {
    count(cursor);
    more.hidden = !cursor;
    more.disabled = false;
    more.onclick = async () => {
      more.disabled = true;
      try {
        const page = await getPart(st.session, st.part, { ...st.inPart, cursor });
        if (!isCurrent()) return;
        for (const r of page.requests) tbody.append(...timelineRow(r, cols, nav));
        shown += page.requests.length;
        paginate(page.next);
      } catch (e) {
        more.disabled = false;
        main.dispatchEvent(new CustomEvent('apierror', { detail: e }));
      }
    };
  };
  paginate(first.next);
  const table = h('table', { class: 'grid timeline' },
    h('thead', {}, h('tr', {}, TIMELINE_COLUMNS.map((t) => h('th', { scope: 'col', text: t })))),
    tbody);
  return { counter, table, more };
}

// renderPart draws one session part into main.
export async function renderPart(main, st, nav, isCurrent) {
  const first = await getPart(st.session, st.part, st.inPart);
  if (!isCurrent()) return;
  const { session, stats } = first;

  const go = (inPart) => nav({ ...st, inPart });
  const listFilters = carry(st.list);
  const canApply = Object.keys(listFilters).length > 0;
  const form = filterForm('part-filters', PART_FILTERS, st.inPart, go, [
    h('button', { type: 'button', id: 'show-all', text: 'Show all requests', disabled: Object.keys(st.inPart).length === 0, onclick: () => go({}) }),
    h('button', {
      type: 'button', id: 'apply-list-filters', text: 'Apply filters', disabled: !canApply,
      title: canApply ? 'Apply the session list filters inside this session' : 'No session list filter applies inside a session',
      onclick: () => go({ ...st.inPart, ...listFilters }),
    }),
  ]);
  const active = chips('part-chips', st.inPart, (k) => {
    const inPart = { ...st.inPart };
    delete inPart[k];
    go(inPart);
  });
  const requests = timeline(st, first, isCurrent, main, nav);
  // The user's block state, when the part has a user and the server holds blocks.
  let userState = null;
  if (first.protection && str(session.user)) {
    try { userState = await getBlock('user', str(session.user)); } catch { userState = null; }
    if (!isCurrent()) return;
  }
  const refresh = () => nav(st);
  const back = { list: st.list, session: '', part: '', inPart: {} };

  // replaceChildren would show a null section (no manual blocks) as the text "null".
  main.replaceChildren(...[
    h('nav', { class: 'crumbs' }, h('a', {
      id: 'back-to-list', href: href(back),
      onclick: (ev) => { if (ev.button === 0 && !ev.metaKey && !ev.ctrlKey) { ev.preventDefault(); nav(back); } },
    }, '← Sessions')),
    h('section', { class: 'card' },
      h('div', { class: 'title-row' },
        h('h1', { id: 'part-title' }, h('span', { class: 'mono', id: 'part-session', text: str(session.session) || st.session }),
          h('span', { class: 'part', id: 'part-part', text: str(session.part) || st.part })),
        h('div', { class: 'title-actions' }, shareBox(location.href), csvButton(st, main), harButton(st, main))),
      header(session, nav)),
    protectionSection(first.protection, session, userState, refresh),
    statsSection(stats),
    activitySection(first.timeline, first.transitions, nav),
    h('section', { class: 'card' },
      h('h2', { text: 'Requests' }),
      form, active,
      requests.counter,
      h('div', { class: 'table-wrap' }, requests.table),
      requests.more),
  ].filter(Boolean));
}
