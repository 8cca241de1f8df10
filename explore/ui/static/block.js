// The dialog that blocks or unblocks a session or a user. Writes need a write token: it is
// asked for in the dialog the first time (or when the API refuses the one kept) and kept in
// this tab's sessionStorage by api.js, never in a link. The API's refusals (403 when the
// server takes no writes, 400 for a bad duration) are shown in the dialog as it words them.
import { setBlock, liftBlock, setWriteToken, hasWriteToken, WriteTokenRequired, APIError } from './api.js';

const $ = (id) => document.getElementById(id);

let pending = null;

// openBlockDialog asks for what a block needs (mode "block": duration and reason; "unblock":
// a confirmation) and sends it. It resolves with the new block state once the API accepted
// it, or null when the dialog is cancelled.
export function openBlockDialog(mode, kind, id) {
  const dlg = $('block-dialog');
  const what = (kind === 'user' ? 'user ' : 'session ');
  $('block-title').textContent = (mode === 'block' ? 'Block ' : 'Unblock ') + what.trim();
  $('block-subject').textContent = id;
  $('block-fields').hidden = mode !== 'block';
  $('block-token-field').hidden = hasWriteToken();
  $('block-token').value = '';
  $('block-error').hidden = true;
  $('block-error').textContent = '';
  $('block-submit').textContent = mode === 'block' ? 'Block' : 'Unblock';
  $('block-submit').disabled = false;
  if (mode === 'block') {
    $('block-for').value = '1h';
    $('block-reason').value = '';
  }
  if (pending) pending(null);
  return new Promise((resolve) => {
    pending = (v) => { pending = null; resolve(v); };
    pending.mode = mode;
    pending.kind = kind;
    pending.id = id;
    if (!dlg.open) dlg.showModal();
    (mode === 'block' ? $('block-for') : hasWriteToken() ? $('block-submit') : $('block-token')).focus();
  });
}

function fail(msg, askToken) {
  $('block-error').textContent = msg;
  $('block-error').hidden = false;
  if (askToken) {
    $('block-token-field').hidden = false;
    $('block-token').focus();
  }
  $('block-submit').disabled = false;
}

async function submit(ev) {
  ev.preventDefault();
  if (!pending) return;
  const { mode, kind, id } = pending;
  const tok = $('block-token').value.trim();
  if (!$('block-token-field').hidden) {
    if (!tok) {
      fail('Enter a write token: a token of server.write_tokens_file.', true);
      return;
    }
    setWriteToken(tok);
  }
  $('block-submit').disabled = true;
  try {
    const state = mode === 'block'
      ? await setBlock(kind, id, $('block-for').value.trim(), $('block-reason').value.trim())
      : await liftBlock(kind, id);
    $('block-dialog').close();
    if (pending) pending(state);
  } catch (e) {
    if (e instanceof WriteTokenRequired) {
      setWriteToken('');
      $('block-token').value = '';
      fail(e.message, true);
    } else {
      fail(e instanceof APIError ? e.message : 'Something went wrong: ' + (e && e.message ? e.message : String(e)), false);
    }
  }
}

function cancel() {
  $('block-dialog').close();
  if (pending) pending(null);
}

$('block-form').addEventListener('submit', submit);
$('block-cancel').addEventListener('click', cancel);
$('block-dialog').addEventListener('cancel', () => { if (pending) pending(null); });
