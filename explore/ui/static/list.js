// The session list: filters, newest parts first, "Load more" with the API's cursor.
import { h, fmtInt, fmtTime, str, riskClass, riskReasons } from './dom.js';
import { listSessions } from './api.js';
import { LIST_FILTERS, carry, href } from './state.js';
import { filterForm, chips } from './filters.js';
import { pivot } from './pivot.js';

const PAGE = 50;

// counts renders an object of value -> count as "GET 12 · POST 3", largest first.
export function counts(obj, max = 4) {
  if (!obj || typeof obj !== 'object') return '';
  const e = Object.entries(obj).filter(([, n]) => typeof n === 'number').sort((a, b) => b[1] - a[1]);
  const shown = e.slice(0, max).map(([k, n]) => k + ' ' + fmtInt(n));
  if (e.length > max) shown.push('+' + (e.length - max));
  return shown.join(' · ');
}

// pivots shows the first few values of a list as pivot links, and how many more there are.
function pivots(name, values, nav, max, cls) {
  const shown = values.slice(0, max).map((v, i) => [i > 0 ? ', ' : '', pivot(name, v, nav, undefined, cls)]);
  return [shown, values.length > max ? ' +' + (values.length - max) : ''];
}

// flowLinks shows a part's flows, most requests first, each a pivot with its count.
function flowLinks(flows, nav, max) {
  if (!flows || typeof flows !== 'object') return '';
  const e = Object.entries(flows).filter(([, n]) => typeof n === 'number').sort((a, b) => b[1] - a[1]);
  return [e.slice(0, max).map(([k, n], i) => [i > 0 ? ' · ' : '', pivot('flow', k, nav), ' ' + fmtInt(n)]),
    e.length > max ? ' +' + (e.length - max) : ''];
}

function keyText(key) {
  if (!key || typeof key !== 'object') return '';
  return str(key.source) + ':' + str(key.name);
}

function row(s, st, nav) {
  const target = { list: st.list, session: str(s.session), part: str(s.part), inPart: carry(st.list) };
  const link = h('a', {
    class: 'session-link', href: href(target),
    onclick: (ev) => {
      if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
      ev.preventDefault();
      nav(target);
    },
  }, h('span', { class: 'mono', text: str(s.session) }), h('span', { class: 'part', text: str(s.part) }));
  const mal = Number(s.malicious) || 0;
  const ips = Array.isArray(s.ips) ? s.ips.map(str) : [];
  const uas = Array.isArray(s.user_agents) ? s.user_agents.map(str) : [];
  return h('tr', { class: mal > 0 ? 'malicious' : '', dataset: { session: str(s.session), part: str(s.part) } },
    h('td', { class: 'nowrap', text: fmtTime(s.last_seen) }),
    h('td', {}, link),
    h('td', { class: 'user', title: str(s.user) }, pivot('user', s.user, nav)),
    h('td', { class: 'role' }, pivot('role', s.role, nav)),
    h('td', { class: 'num', text: fmtInt(s.requests) }),
    h('td', { class: 'small', text: counts(s.methods) }),
    h('td', { class: 'small', text: counts(s.statuses) }),
    h('td', { class: 'small flows' }, flowLinks(s.flows, nav, 3)),
    h('td', { class: 'num' }, mal > 0 ? h('span', { class: 'badge danger', text: fmtInt(mal) }) : '0'),
    h('td', { class: 'num risk-cell', title: riskReasons(s.risk_reasons) },
      Number(s.risk) > 0 ? h('span', { class: riskClass(s.risk), text: fmtInt(s.risk) }) : '0'),
    h('td', { class: 'small mono ips', title: ips.join(', ') }, pivots('ip', ips, nav, 2)),
    h('td', { class: 'small uas' }, pivots('ua', uas, nav, 1, 'ua')),
    h('td', { class: 'small mono', text: keyText(s.key) }),
    h('td', { class: 'nowrap small', text: fmtTime(s.first_seen) }),
  );
}

// renderList draws the list view into main.
export async function renderList(main, st, nav, isCurrent) {
  const apply = (list) => nav({ list, session: '', part: '', inPart: {} });
  const form = filterForm('list-filters', LIST_FILTERS, st.list, apply,
    [h('button', { type: 'button', id: 'list-reset', text: 'Reset', onclick: () => apply({}) })]);
  const active = chips('list-chips', st.list, (k) => {
    const list = { ...st.list };
    delete list[k];
    apply(list);
  });
  const tbody = h('tbody', { id: 'session-rows' });
  const status = h('p', { id: 'list-status', class: 'muted', text: 'Loading sessions…' });
  const more = h('button', { type: 'button', id: 'load-more', hidden: true, text: 'Load more' });
  const table = h('table', { class: 'grid sessions' },
    h('thead', {}, h('tr', {}, ['Last seen', 'Session / part', 'User', 'Role', 'Requests', 'Methods',
      'Statuses', 'Flows', 'Malicious', 'Risk', 'Client IPs', 'User agents', 'Key', 'First seen'].map((t) => h('th', { scope: 'col', text: t })))),
    tbody);
  main.replaceChildren(
    h('section', { class: 'card' }, h('h1', { text: 'Sessions' }), form, active),
    h('section', { class: 'card' }, h('div', { class: 'table-wrap' }, table), status, more));

  let shown = 0;
  const load = async (cursor) => {
    more.disabled = true;
    const { sessions, next } = await listSessions({ ...st.list, limit: st.limit || PAGE, cursor });
    if (!isCurrent()) return;
    for (const s of sessions) tbody.append(row(s, st, nav));
    shown += sessions.length;
    status.textContent = shown === 0
      ? 'No session parts match these filters.'
      : fmtInt(shown) + (shown === 1 ? ' session part' : ' session parts') + ', newest first.';
    more.hidden = next === '';
    more.disabled = false;
    more.onclick = () => load(next).catch((e) => main.dispatchEvent(new CustomEvent('apierror', { detail: e })));
  };
  await load('');
}
