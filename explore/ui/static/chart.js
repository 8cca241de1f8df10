// A time chart drawn as SVG: counts per time bucket as bars (the first series) and lines (the
// others), with axes, ticks, a title and a description for assistive technology, and the same
// numbers in a table, hidden visually until "Show as table" is pressed. Labels are text nodes;
// nothing here parses markup.
import { h, fmtInt } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';
const W = 960, H = 240;
const M = { left: 52, right: 14, top: 12, bottom: 30 };

// s creates an SVG element: attributes as given, "text" as its text content.
function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = String(v);
    else if (k === 'class') el.setAttribute('class', v);
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c) el.append(c);
  return el;
}

// niceStep is the step of about n ticks from 0 to max: 1, 2 or 5 times a power of ten.
export function niceStep(max, n = 4) {
  if (!(max > 0)) return 1;
  const raw = max / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  const step = (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  return Math.max(1, step);
}

const pad = (n) => String(n).padStart(2, '0');

// timeLabel shows a bucket's start in UTC as precisely as the chart needs: the day for
// buckets of a day or more, month-day and time when the period spans days, else the time.
export function timeLabel(iso, bucketSeconds, spanSeconds) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const day = d.getUTCFullYear() + '-' + pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate());
  const clock = pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes());
  if (bucketSeconds >= 86400) return day;
  if (spanSeconds > 86400) return day.slice(5) + ' ' + clock;
  return clock;
}

// durationText names a bucket width for people: "15 minutes", "2 hours", "1 day".
export function durationText(sec) {
  const unit = (n, one) => n + ' ' + one + (n === 1 ? '' : 's');
  if (sec % 86400 === 0) return unit(sec / 86400, 'day');
  if (sec % 3600 === 0) return unit(sec / 3600, 'hour');
  if (sec % 60 === 0) return unit(sec / 60, 'minute');
  return unit(sec, 'second');
}

// timeChart returns a figure with the chart of buckets ([{start, <series keys>}]).
//   id: the figure's id, prefix of its parts' ids;
//   title: what the chart shows; series: [{key, label, cls}], the first drawn as bars;
//   bucketSeconds: the width of a bucket;
//   link(bucket): {href, open} for the session list of a bucket (open navigates in page).
export function timeChart({ id, title, series, buckets, bucketSeconds, link }) {
  const n = buckets.length;
  const span = n * bucketSeconds;
  const max = Math.max(0, ...buckets.flatMap((b) => series.map((sr) => b[sr.key])));
  const step = niceStep(max);
  const top = Math.max(step, Math.ceil(max / step) * step);
  const pw = W - M.left - M.right, ph = H - M.top - M.bottom;
  const bw = n > 0 ? pw / n : pw;
  const x = (i) => M.left + i * bw;
  const y = (v) => M.top + ph - (v / top) * ph;

  const totals = series.map((sr) => buckets.reduce((a, b) => a + b[sr.key], 0));
  let peak = 0;
  for (let i = 1; i < n; i++) if (buckets[i][series[0].key] > buckets[peak][series[0].key]) peak = i;
  const desc = n === 0 ? 'No data.' :
    series.map((sr, i) => sr.label + ': ' + fmtInt(totals[i]) + ' in all').join('; ') + '. ' +
    n + ' buckets of ' + durationText(bucketSeconds) + ' from ' + timeLabel(buckets[0].start, bucketSeconds, span) +
    ' UTC. Highest ' + series[0].label.toLowerCase() + ': ' + fmtInt(buckets[peak][series[0].key]) + ' at ' +
    timeLabel(buckets[peak].start, bucketSeconds, span) + '.';

  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', role: 'img', 'aria-labelledby': id + '-title ' + id + '-desc', id: id + '-svg' },
    s('title', { id: id + '-title', text: title }),
    s('desc', { id: id + '-desc', text: desc }));

  // Y axis: grid lines and labels at each tick.
  const yAxis = s('g', { class: 'axis y-axis' });
  for (let v = 0; v <= top; v += step) {
    yAxis.append(
      s('line', { x1: M.left, x2: W - M.right, y1: y(v), y2: y(v), class: v === 0 ? 'baseline' : 'grid' }),
      s('text', { x: M.left - 6, y: y(v), dy: '0.32em', 'text-anchor': 'end', text: fmtInt(v) }));
  }
  // X axis: about seven labels, at whole multiples of a bucket.
  const xAxis = s('g', { class: 'axis x-axis' });
  const every = Math.max(1, Math.ceil(n / 7));
  for (let i = 0; i < n; i += every) {
    xAxis.append(
      s('line', { x1: x(i), x2: x(i), y1: M.top + ph, y2: M.top + ph + 4, class: 'tick' }),
      s('text', { x: x(i), y: M.top + ph + 17, 'text-anchor': i === 0 ? 'start' : 'middle', text: timeLabel(buckets[i].start, bucketSeconds, span) }));
  }
  xAxis.append(s('text', { x: W - M.right, y: M.top + ph + 17, 'text-anchor': 'end', class: 'unit', text: 'UTC' }));
  svg.append(yAxis, xAxis);

  // The first series as bars, each a link to the bucket's sessions.
  const bars = s('g', { class: 'bars ' + series[0].cls });
  buckets.forEach((b, i) => {
    const v = b[series[0].key];
    const tip = timeLabel(b.start, bucketSeconds, span) + ' UTC: ' + series.map((sr) => sr.label.toLowerCase() + ' ' + fmtInt(b[sr.key])).join(', ');
    const rect = s('rect', { x: x(i) + bw * 0.1, width: Math.max(bw * 0.8, 0.5), y: y(v), height: Math.max(0, M.top + ph - y(v)), class: 'chart-bar' },
      s('title', { text: tip }));
    if (!link || v === 0) {
      bars.append(rect);
      return;
    }
    const l = link(b);
    const a = s('a', { href: l.href, tabindex: '-1', class: 'bar-link' }, rect);
    a.addEventListener('click', (ev) => {
      if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
      ev.preventDefault();
      l.open();
    });
    bars.append(a);
  });
  svg.append(bars);
  // The other series as lines through the middle of each bucket.
  for (const sr of series.slice(1)) {
    const d = buckets.map((b, i) => (i === 0 ? 'M' : 'L') + (x(i) + bw / 2).toFixed(1) + ' ' + y(b[sr.key]).toFixed(1)).join(' ');
    if (n > 0) svg.append(s('path', { d, class: 'chart-line ' + sr.cls }));
  }

  const legend = h('ul', { class: 'legend', 'aria-hidden': 'true' }, series.map((sr, i) =>
    h('li', {}, h('span', { class: 'swatch ' + sr.cls + (i === 0 ? ' swatch-bar' : ' swatch-line') }), sr.label)));

  // The same numbers as a table: read by screen readers, shown on request.
  const table = h('table', { class: 'grid chart-table' },
    h('caption', { text: title + ' (per ' + durationText(bucketSeconds) + ', UTC)' }),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Time (UTC)' }), series.map((sr) => h('th', { scope: 'col', class: 'num', text: sr.label })))),
    h('tbody', {}, buckets.map((b) => {
      const label = timeLabel(b.start, bucketSeconds, span);
      let cell = label;
      if (link && b[series[0].key] > 0) {
        const l = link(b);
        cell = h('a', { href: l.href, onclick: (ev) => {
          if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
          ev.preventDefault();
          l.open();
        } }, label);
      }
      return h('tr', {}, h('th', { scope: 'row', class: 'nowrap' }, cell), series.map((sr) => h('td', { class: 'num', text: fmtInt(b[sr.key]) })));
    })));

  // The wrapper is what hides the table: a table grows to its rows whatever its own size.
  const data = h('div', { class: 'table-wrap sr-only', id: id + '-table' }, table);
  const toggle = h('button', { type: 'button', class: 'chart-toggle', id: id + '-toggle', 'aria-pressed': 'false', 'aria-controls': id + '-table', text: 'Show as table' });
  toggle.addEventListener('click', () => {
    const asTable = toggle.getAttribute('aria-pressed') !== 'true';
    toggle.setAttribute('aria-pressed', String(asTable));
    toggle.textContent = asTable ? 'Show as chart' : 'Show as table';
    data.classList.toggle('sr-only', !asTable);
    svg.classList.toggle('hidden', asTable);
    legend.hidden = asTable;
  });

  return h('figure', { class: 'chart', id },
    h('figcaption', { class: 'chart-head' }, h('h2', { text: title }), toggle),
    svg, legend, data);
}
