// Filter forms and the chips that show active filters, shared by the list and the part view.
import { h } from './dom.js';
import { LABELS, toInputTime, fromInputTime } from './state.js';

const PLACEHOLDERS = {
  user: 'e.g. alice', role: 'e.g. admin', flow: 'e.g. auth', ip: 'e.g. 203.0.113.7',
  request_id: 'x-request-id', method: 'GET, POST…', status: '404 or 5xx', host: 'api.example.com',
  path: '/api/v1/', route: '/users/{id}', ua: 'exact User-Agent', ja3: 'JA3 hash', ja4: 'e.g. t13d1516h2_…',
  min_risk: '0–100, e.g. 60',
};

// filterForm builds a form with one field per name, filled from values; onApply receives the
// non-empty values when the form is submitted.
export function filterForm(id, names, values, onApply, extraButtons) {
  const fields = names.map((name) => {
    const fid = id + '-' + name;
    let input;
    if (name === 'malicious') {
      input = h('input', { id: fid, name, type: 'checkbox', checked: values[name] === 'true' });
      return h('label', { class: 'field check', for: fid }, input, LABELS[name]);
    }
    if (name === 'from' || name === 'to') {
      input = h('input', { id: fid, name, type: 'datetime-local', step: '1', value: toInputTime(values[name]) });
    } else {
      input = h('input', {
        id: fid, name, type: 'text', value: values[name] || '', placeholder: PLACEHOLDERS[name] || '',
        maxlength: '1024', spellcheck: 'false', autocomplete: 'off',
      });
    }
    return h('label', { class: 'field', for: fid }, h('span', { text: LABELS[name] }), input);
  });
  const form = h('form', { id, class: 'filters', autocomplete: 'off' },
    h('div', { class: 'fields' }, fields),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: 'Filter' }), extraButtons || []));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const out = {};
    for (const name of names) {
      const el = form.elements.namedItem(name);
      if (!el) continue;
      let v;
      if (name === 'malicious') v = el.checked ? 'true' : '';
      else if (name === 'from' || name === 'to') v = fromInputTime(el.value);
      else v = el.value.trim();
      if (v) out[name] = v;
    }
    onApply(out);
  });
  return form;
}

// chips shows the active filters; clicking a chip's button removes that filter.
export function chips(id, values, onRemove) {
  const keys = Object.keys(values);
  if (keys.length === 0) return null;
  return h('ul', { id, class: 'chips', 'aria-label': 'Active filters' }, keys.map((k) =>
    h('li', { class: 'chip', dataset: { filter: k } },
      h('span', { class: 'chip-name', text: LABELS[k] || k }),
      h('span', { class: 'chip-value', title: values[k], text: k === 'malicious' ? 'yes' : values[k] }),
      h('button', {
        type: 'button', class: 'chip-remove', title: 'Remove this filter', 'aria-label': 'Remove filter ' + (LABELS[k] || k),
        onclick: () => onRemove(k),
      }, '×'))));
}
