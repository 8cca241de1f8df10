// The activity of a whole part: a time axis of its requests (one mark per request, or bars per
// interval when there are many), the request rate, and the route-to-route path, most frequent
// steps first. Everything is drawn from the part answer's timeline and transitions, which the
// store computes over all of the part's requests whatever the filters and the page.
import { h, fmtInt, fmtClock, fmtTime } from './dom.js';
import { pivot } from './pivot.js';

const SVG = 'http://www.w3.org/2000/svg';

// svg creates an SVG element; attrs are attribute values, children nodes or text (text nodes).
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// CLASS_NAMES name the status classes of a bucket's counts (index 0: no response).
const CLASS_NAMES = ['no response', '1xx', '2xx', '3xx', '4xx', '5xx'];

function classOf(status) {
  const n = Number(status);
  return n >= 100 && n <= 599 ? Math.floor(n / 100) : 0;
}

// Geometry of the chart, in viewBox units.
const W = 1000, LEFT = 8, RIGHT = 8, AXIS_Y = 80, MARK_Y = 44, BAR_TOP = 10, RATE_TOP = 128, RATE_H = 36, HEIGHT = 170;
const PLOT = W - LEFT - RIGHT;

// MAX_STEPS is how many transitions the list shows; the rest are counted in one line.
const MAX_STEPS = 12;

let chartSeq = 0;

// isoAt is the record time ms milliseconds after the RFC 3339 time from.
function isoAt(from, ms) {
  const t = new Date(from).getTime();
  return Number.isNaN(t) ? '' : new Date(t + ms).toISOString();
}

// axis draws the time axis with its first, middle and last times.
function axis(tl, span) {
  const ticks = span > 0 ? [0, 0.5, 1] : [0];
  return svg('g', { class: 'tl-axis' },
    svg('line', { x1: LEFT, x2: W - RIGHT, y1: AXIS_Y, y2: AXIS_Y }),
    ticks.map((f) => {
      const x = LEFT + f * PLOT;
      const anchor = f === 0 ? 'start' : f === 1 ? 'end' : 'middle';
      return svg('g', {}, svg('line', { x1: x, x2: x, y1: AXIS_Y, y2: AXIS_Y + 4 }),
        svg('text', { x, y: AXIS_Y + 16, 'text-anchor': anchor }, fmtClock(isoAt(tl.from, f * span))));
    }));
}

// marksLayer draws one mark per request: a dot coloured by status class, a triangle for a
// malicious request. Each carries a title with its time, status and route.
function marksLayer(tl, span) {
  return svg('g', { class: 'tl-marks' }, tl.marks.map((m) => {
    const x = LEFT + (span > 0 ? (m.at / span) * PLOT : PLOT / 2);
    const c = classOf(m.status);
    const label = fmtTime(isoAt(tl.from, m.at)) + ' · ' + (m.status ? m.status : 'no response') + ' · ' + m.route + (m.malicious ? ' · malicious' : '');
    const title = svg('title', {}, label);
    if (m.malicious) {
      return svg('polygon', {
        class: 'tl-mark mal tl-c' + c, 'data-status': m.status,
        points: [[x, MARK_Y - 9], [x + 8, MARK_Y + 6], [x - 8, MARK_Y + 6]].map((p) => p.map((v) => v.toFixed(1)).join(',')).join(' '),
      }, title);
    }
    return svg('circle', { class: 'tl-mark tl-c' + c, 'data-status': m.status, cx: x.toFixed(1), cy: MARK_Y, r: 5 }, title);
  }));
}

// bucketsLayer draws a bar per interval, stacked by status class, with a triangle above the
// intervals that hold malicious requests.
function bucketsLayer(tl) {
  const n = tl.buckets.length;
  const most = Math.max(1, ...tl.buckets.map((b) => b.requests));
  const bw = PLOT / Math.max(1, n);
  const height = AXIS_Y - BAR_TOP - 4;
  return svg('g', { class: 'tl-buckets' }, tl.buckets.map((b, i) => {
    if (b.requests === 0) return null;
    const x = LEFT + i * bw;
    let y = AXIS_Y;
    const parts = b.classes.map((k, c) => {
      if (k === 0) return null;
      const hgt = (k / most) * height;
      y -= hgt;
      return svg('rect', { class: 'tl-c' + c, x: (x + bw * 0.1).toFixed(1), width: Math.max(1, bw * 0.8).toFixed(1), y: y.toFixed(1), height: Math.max(0.5, hgt).toFixed(1) });
    });
    const start = isoAt(tl.from, i * tl.bucket_ms);
    const label = fmtClock(start) + ': ' + fmtInt(b.requests) + ' requests (' +
      b.classes.map((k, c) => (k ? CLASS_NAMES[c] + ' ' + fmtInt(k) : '')).filter(Boolean).join(', ') + ')' +
      (b.malicious ? ', ' + fmtInt(b.malicious) + ' malicious' : '');
    const mx = x + bw / 2;
    return svg('g', { class: 'tl-bucket' + (b.malicious ? ' mal' : ''), 'data-requests': b.requests },
      svg('title', {}, label), parts,
      b.malicious ? svg('polygon', {
        class: 'tl-mal-flag',
        points: [[mx, y - 12], [mx + 6, y - 2], [mx - 6, y - 2]].map((p) => p.map((v) => v.toFixed(1)).join(',')).join(' '),
      }) : null);
  }));
}

// rateLayer draws the request rate as a line under the axis: at each interval, the requests of
// the minute that ends with it (of the interval itself when intervals are a minute or longer,
// then scaled to a minute), so that short intervals do not turn one request into a spike.
function rateLayer(tl) {
  const per = Math.max(1, Math.round(60000 / tl.bucket_ms));
  let window = 0;
  const rate = tl.buckets.map((b, i) => {
    window += b.requests - (i >= per ? tl.buckets[i - per].requests : 0);
    return per > 1 ? window : (b.requests * 60000) / tl.bucket_ms;
  });
  const most = Math.max(...rate, 0);
  if (most <= 0) return null;
  const bw = PLOT / Math.max(1, rate.length);
  const pts = rate.map((r, i) => [LEFT + (i + 0.5) * bw, RATE_TOP + RATE_H - (r / most) * RATE_H]);
  const line = pts.map(([x, y], i) => (i ? 'L' : 'M') + x.toFixed(1) + ' ' + y.toFixed(1)).join(' ');
  return svg('g', { class: 'tl-rate' },
    svg('line', { class: 'tl-rate-base', x1: LEFT, x2: W - RIGHT, y1: RATE_TOP + RATE_H, y2: RATE_TOP + RATE_H }),
    svg('path', { d: line }),
    svg('text', { x: LEFT, y: RATE_TOP - 6 }, 'requests a minute, up to ' + fmtInt(Math.round(most))));
}

// bucketTable lists the intervals with requests, for readers that do not see the chart.
function bucketTable(tl, id) {
  return h('table', { class: 'visually-hidden', id },
    h('caption', { text: 'Requests by interval of ' + fmtInt(tl.bucket_ms / 1000) + ' s' }),
    h('thead', {}, h('tr', {}, ['Start (UTC)', 'Requests', ...CLASS_NAMES, 'Malicious'].map((t) => h('th', { scope: 'col', text: t })))),
    h('tbody', {}, tl.buckets.map((b, i) => (b.requests ? h('tr', {},
      h('td', { text: fmtTime(isoAt(tl.from, i * tl.bucket_ms)) }), h('td', { text: fmtInt(b.requests) }),
      b.classes.map((k) => h('td', { text: fmtInt(k) })), h('td', { text: fmtInt(b.malicious) })) : null))));
}

// chart draws the timeline as an SVG image with a title and a description, and its data as
// a table for screen readers.
function chart(tl) {
  const id = 'tl-' + (++chartSeq);
  const span = Math.max(0, new Date(tl.to).getTime() - new Date(tl.from).getTime()) || 0;
  const requests = tl.buckets.reduce((n, b) => n + b.requests, 0);
  const malicious = tl.buckets.reduce((n, b) => n + b.malicious, 0);
  const byMarks = tl.marks.length > 0;
  const desc = fmtInt(requests) + ' requests from ' + fmtTime(tl.from) + ' to ' + fmtTime(tl.to) +
    (byMarks ? ', one mark each' : ', in intervals of ' + fmtInt(tl.bucket_ms / 1000) + ' s') +
    '; ' + fmtInt(malicious) + ' malicious (triangles); colours are status classes. Mean ' +
    tl.per_minute.toFixed(1) + ' requests a minute, at most ' + fmtInt(tl.peak_per_minute) + ' in one minute.';
  const image = svg('svg', {
    class: 'chart timeline-chart', id: 'timeline-chart', viewBox: '0 0 ' + W + ' ' + HEIGHT, role: 'img',
    'aria-labelledby': id + '-title ' + id + '-desc', 'data-mode': byMarks ? 'marks' : 'buckets',
  },
  svg('title', { id: id + '-title' }, 'Requests over time'),
  svg('desc', { id: id + '-desc' }, desc),
  byMarks ? marksLayer(tl, span) : bucketsLayer(tl),
  axis(tl, span),
  rateLayer(tl));
  return [image, bucketTable(tl, id + '-table')];
}

function legend() {
  return h('ul', { class: 'tl-legend small muted', 'aria-hidden': 'true' },
    [2, 3, 4, 5, 0].map((c) => h('li', {}, h('span', { class: 'swatch tl-c' + c }), CLASS_NAMES[c])),
    h('li', {}, h('span', { class: 'swatch tri' }), 'malicious'));
}

// stepsList shows the most frequent transitions as "A → B ×n" with bars, each route a pivot.
function stepsList(tr, nav) {
  if (tr.total === 0) return h('p', { class: 'muted small', id: 'transitions-none', text: 'A single request: no transitions.' });
  const shown = tr.top.slice(0, MAX_STEPS);
  const most = Math.max(1, ...shown.map((s) => s.count));
  const hidden = tr.top.length - shown.length + tr.more;
  const hiddenSteps = tr.top.slice(MAX_STEPS).reduce((n, s) => n + s.count, 0) + tr.more_count;
  return [
    h('ol', { class: 'transitions', id: 'transitions' }, shown.map((s) => {
      const bar = h('span', { class: 'bar' });
      bar.style.width = ((s.count * 100) / most).toFixed(1) + '%';
      return h('li', { class: 'transition' },
        h('span', { class: 'step mono' }, pivot('route', s.from, nav), h('span', { class: 'arrow', 'aria-label': 'then' }, ' → '), pivot('route', s.to, nav)),
        h('span', { class: 'num step-count', text: '×' + fmtInt(s.count) }),
        h('span', { class: 'bar-track' }, bar));
    })),
    hidden > 0 ? h('p', { class: 'muted small', id: 'transitions-more', text: fmtInt(hidden) + (hidden === 1 ? ' more transition (' : ' more transitions (') + fmtInt(hiddenSteps) + (hiddenSteps === 1 ? ' step)' : ' steps)') }) : null,
  ];
}

// activitySection draws the part's timeline, rate and transitions; null when the answer has
// no timeline.
export function activitySection(tl, tr, nav) {
  if (!tl || !tl.from || tl.buckets.length === 0) return null;
  return h('section', { class: 'card', id: 'activity' },
    h('h2', {}, 'Timeline ', h('span', { class: 'muted small', text: 'whole part' })),
    h('p', { class: 'small', id: 'rate' },
      h('strong', { text: tl.per_minute.toFixed(1) }), ' requests a minute on average · peak ',
      h('strong', { text: fmtInt(tl.peak_per_minute) }), ' in one minute'),
    h('div', { class: 'chart-wrap' }, chart(tl)),
    legend(),
    h('h3', { text: 'Route to route' }),
    h('p', { class: 'muted small', text: fmtInt(tr.total) + ' steps between consecutive requests, most frequent first' }),
    stepsList(tr, nav));
}

