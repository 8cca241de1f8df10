// Pivots: every client trait and place the views show (IP, user, role, user agent, JA3, JA4,
// route, flow) is a link to the session list filtered to the parts that share it.
import { h, str } from './dom.js';
import { LABELS, listOf, href } from './state.js';

// pivotable says whether the list filter accepts the value as it is shown: the API refuses a
// route that does not begin with "/", and an empty value filters nothing.
function pivotable(name, v) {
  if (v === '') return false;
  if (name === 'route') return v.startsWith('/');
  return true;
}

// pivot returns a link to the sessions that share value under the list filter name, with the
// value (or text) as its text; a value the filter cannot take shows as plain text. nav opens
// the list in place; the link's href serves a new tab and a copied link.
export function pivot(name, value, nav, text, cls) {
  const v = str(value);
  const shown = text === undefined ? v : text;
  if (!pivotable(name, v)) return h('span', { class: cls || '', text: shown });
  const target = listOf(name, v);
  return h('a', {
    class: 'pivot' + (cls ? ' ' + cls : ''), href: href(target), dataset: { pivot: name },
    title: 'Sessions with this ' + (LABELS[name] || name).toLowerCase() + ': ' + v,
    onclick: (ev) => {
      // A click inside a request row must not also open or close the row.
      ev.stopPropagation();
      if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
      ev.preventDefault();
      nav(target);
    },
  }, shown);
}
