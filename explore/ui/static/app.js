// Entry point: reads the view from the URL, draws it, and keeps the URL in step with every
// change so that a copied link or the back button shows the same view again.
import { findRequest, setToken, AuthRequired, APIError } from './api.js';
import { read, write } from './state.js';
import { h } from './dom.js';
import { renderList } from './list.js';
import { renderPart } from './part.js';
import { renderOverview } from './overview.js';

const main = document.getElementById('main');
const banner = document.getElementById('banner');
let generation = 0;

function showError(e) {
  if (e instanceof AuthRequired) {
    askToken();
    return;
  }
  const msg = e instanceof APIError ? e.message : 'Something went wrong: ' + (e && e.message ? e.message : String(e));
  banner.replaceChildren(h('span', { text: msg }),
    h('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss', onclick: () => { banner.hidden = true; } }, '×'));
  banner.hidden = false;
  document.body.dataset.state = 'error';
}

function askToken() {
  const dlg = document.getElementById('token-dialog');
  document.body.dataset.state = 'auth';
  if (!dlg.open) dlg.showModal();
  document.getElementById('token-input').focus();
}

document.getElementById('token-form').addEventListener('submit', () => {
  const input = document.getElementById('token-input');
  setToken(input.value.trim());
  input.value = '';
  render();
});

async function render() {
  const gen = ++generation;
  const isCurrent = () => gen === generation;
  const st = read(location.search);
  banner.hidden = true;
  document.body.dataset.state = 'loading';
  document.body.dataset.view = st.view;
  for (const [id, view] of [['nav-overview', 'overview'], ['nav-sessions', 'list']]) {
    const a = document.getElementById(id);
    if (st.view === view) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  main.setAttribute('aria-busy', 'true');
  document.getElementById('rid-input').value = st.session && st.inPart.request_id ? st.inPart.request_id : '';
  document.title = st.session ? 'apisessions — ' + st.session + ' / ' + st.part
    : st.view === 'overview' ? 'apisessions — overview' : 'apisessions — sessions';
  try {
    if (st.view === 'part') await renderPart(main, st, navigate, isCurrent);
    else if (st.view === 'overview') await renderOverview(main, st, navigate, isCurrent);
    else await renderList(main, st, navigate, isCurrent);
    if (isCurrent()) document.body.dataset.state = 'ready';
  } catch (e) {
    if (!isCurrent()) return;
    if (main.getAttribute('aria-busy') === 'true' && !(e instanceof AuthRequired)) {
      main.replaceChildren(h('p', { class: 'muted', text: 'Nothing to show.' }));
    }
    showError(e);
  } finally {
    if (isCurrent()) main.removeAttribute('aria-busy');
  }
}

// navigate moves to a new view state, recording it in the history.
function navigate(st) {
  const url = location.pathname + write(st);
  if (url !== location.pathname + location.search) history.pushState(null, '', url);
  render();
  window.scrollTo(0, 0);
}

window.addEventListener('popstate', render);
main.addEventListener('apierror', (ev) => showError(ev.detail));

// "Explore from a request": find the part a request belongs to and open it filtered to that
// request; removing the request id filter then shows the whole part.
document.getElementById('rid-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const id = document.getElementById('rid-input').value.trim();
  if (!id) return;
  try {
    const { session, part } = await findRequest(id);
    if (!session || !part) throw new APIError(500, 'the server did not say which session the request belongs to');
    navigate({ list: read(location.search).list, session, part, inPart: { request_id: id } });
  } catch (e) {
    if (e instanceof APIError && e.status === 404) showError(new APIError(404, 'No request with id "' + id + '" is stored.'));
    else showError(e);
  }
});

// The brand and the Overview link open the overview; the Sessions link the unfiltered list.
for (const [id, view] of [['home-link', 'overview'], ['nav-overview', 'overview'], ['nav-sessions', 'list']]) {
  document.getElementById(id).addEventListener('click', (ev) => {
    if (ev.button !== 0 || ev.metaKey || ev.ctrlKey) return;
    ev.preventDefault();
    navigate({ view, list: {}, session: '', part: '', inPart: {} });
  });
}

render();
