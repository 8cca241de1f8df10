// DOM helpers. Values that come from traffic are attacker-written, so they only ever reach the
// page as text nodes or attribute values: nothing here parses HTML.

// h creates an element. Props: "class", "text", "dataset", on<event> listeners, DOM properties
// given as non-strings (checked, disabled), anything else as an attribute. Children may be
// nodes, strings (become text nodes), arrays, or null/undefined/false (skipped).
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (typeof v === 'boolean') el[k] = v;
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

// append adds children as h does.
export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const num = new Intl.NumberFormat('en-US');
const ms = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });

// fmtInt formats a count; anything not a finite number shows as "–".
export function fmtInt(v) {
  const n = Number(v);
  return Number.isFinite(n) ? num.format(n) : '–';
}

// fmtMs formats a duration in milliseconds.
export function fmtMs(v) {
  const n = Number(v);
  return Number.isFinite(n) ? ms.format(n) : '–';
}

// fmtPct formats part/total as a percentage.
export function fmtPct(part, total) {
  const p = Number(part), t = Number(total);
  if (!Number.isFinite(p) || !Number.isFinite(t) || t <= 0) return '–';
  const v = (p * 100) / t;
  return (v >= 10 || v === 0 ? Math.round(v) : v.toFixed(1)) + '%';
}

// fmtTime shows a record time (RFC 3339, UTC) as "YYYY-MM-DD HH:MM:SS.mmm".
export function fmtTime(s) {
  if (typeof s !== 'string' || s === '') return '–';
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) return s;
  return d.toISOString().replace('T', ' ').replace('Z', '');
}

// fmtClock shows only the time of day of a record time.
export function fmtClock(s) {
  const t = fmtTime(s);
  return t.length > 11 ? t.slice(11) : t;
}

// statusClass names the CSS class for an HTTP status.
export function statusClass(status) {
  const n = Number(status);
  if (!n) return 's0';
  return 's' + Math.floor(n / 100) + 'xx';
}

// riskClass names the CSS class of a risk score badge.
export function riskClass(score) {
  const n = Number(score) || 0;
  if (n >= 60) return 'badge risk high';
  if (n >= 30) return 'badge risk mid';
  return 'badge risk low';
}

// riskReasons shows a part's risk_reasons as "malicious 39.5 · denied 19.1".
export function riskReasons(list) {
  if (!Array.isArray(list)) return '';
  return list.filter((r) => r && typeof r === 'object')
    .map((r) => str(r.signal) + ' ' + (Number.isFinite(Number(r.points)) ? String(Number(r.points)) : '?')).join(' · ');
}

// str turns a JSON value into display text without trusting its type.
export function str(v) {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  try { return JSON.stringify(v); } catch { return ''; }
}
