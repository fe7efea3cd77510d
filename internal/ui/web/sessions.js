// Sessions view: the session list (live by blocking query) with the keys
// each session holds. Acquiring or releasing a lock does not change the
// session list, so held keys are also re-read every 5 s: one request for
// all sessions, never two at once.

import { call, watch, sleep } from './api.js';
import { $, el, clearError, reportError, pollFailed, pollOk, confirmAction } from './dom.js';
import { addressable, keyHash, fmtLockDelay, unaddressableError } from './value.js';

const HELD_MS = 5000;

let held = null; // the last answer: session ID → keys; null until the first
let heldSig = ''; // its JSON, to skip redraws when nothing changed
let cells = new Map(); // session ID → its td.held in the current table

export function show(_route, signal) {
  held = null;
  heldSig = '';
  cells = new Map();
  $('sessions').tBodies[0].replaceChildren();
  $('sessions-empty').hidden = true;
  const refresh = heldRefresher(signal);
  watch('/v1/session/list', signal, {
    onData: (data) => {
      render(Array.isArray(data) ? data : []);
      refresh();
    },
    onFail: (e) => pollFailed('sessions', e),
    onOk: () => pollOk('sessions'),
  }).catch(reportError);
  (async () => {
    for (;;) {
      await sleep(HELD_MS, signal);
      if (signal.aborted) return;
      refresh();
    }
  })().catch(reportError);
}

function render(list) {
  cells = new Map();
  const rows = list.map((s) => {
    const cell = el('td', { className: 'held' });
    cells.set(s.ID, cell);
    fillHeld(cell, s.ID);
    return el('tr', { data: { session: s.ID } },
      el('td', { className: 'mono' }, s.ID),
      el('td', {}, s.Name || ''),
      el('td', {}, s.Node || ''),
      el('td', {}, s.TTL || '—'),
      el('td', {}, s.Behavior || 'release'),
      el('td', { className: 'num' }, fmtLockDelay(s.LockDelay)),
      cell,
      el('td', { className: 'actions' }, el('button', { type: 'button', className: 'destroy danger small' }, 'Destroy')),
    );
  });
  $('sessions').tBodies[0].replaceChildren(...rows);
  $('sessions').hidden = list.length === 0;
  $('sessions-empty').hidden = list.length > 0;
}

// fillHeld: sessions holding nothing are absent from the answer.
function fillHeld(cell, id) {
  if (!held) return cell.replaceChildren(el('span', { className: 'muted' }, '…'));
  const keys = Object.hasOwn(held, id) && Array.isArray(held[id]) ? held[id] : [];
  const items = keys.map((k) => (addressable(k)
    ? el('a', { href: keyHash(k), className: 'mono' }, k)
    : el('span', { className: 'mono', title: unaddressableError(k).message }, k)));
  cell.replaceChildren(...(items.length ? items : [el('span', { className: 'muted' }, 'none')]));
}

// heldRefresher returns refresh(), which reads GET /v1/session/keys. One
// request at a time: a refresh asked for while one is in flight runs once
// after it (so a list change is answered from after the change), however
// many were asked for.
function heldRefresher(signal) {
  let running = false;
  let again = false;
  let seq = 0;
  let applied = 0;

  async function once() {
    const n = ++seq;
    let res;
    try {
      res = await call('GET', '/v1/session/keys', { signal });
    } catch (e) {
      if (!signal.aborted) pollFailed('held', e); // shown once, the table stays
      return;
    }
    // Requests do not overlap, so answers come in order; the sequence
    // number keeps an older answer from undoing a newer one regardless.
    if (signal.aborted || n < applied) return;
    applied = n;
    pollOk('held');
    const sig = JSON.stringify(res.data);
    if (sig === heldSig) return;
    heldSig = sig;
    held = res.data && typeof res.data === 'object' ? res.data : {};
    for (const [id, cell] of cells) fillHeld(cell, id);
  }

  return function refresh() {
    if (running) {
      again = true;
      return;
    }
    running = true;
    (async () => {
      do {
        again = false;
        await once();
      } while (again && !signal.aborted);
    })().catch(reportError).finally(() => { running = false; });
  };
}

$('sessions').tBodies[0].addEventListener('click', async (ev) => {
  const btn = ev.target.closest('button.destroy');
  if (!btn) return;
  const id = btn.closest('tr').dataset.session;
  if (!(await confirmAction(`Destroy session ${id}? Its locks are released (or its keys deleted, per its behavior).`, 'Destroy'))) return;
  btn.disabled = true;
  try {
    await call('PUT', `/v1/session/destroy/${encodeURIComponent(id)}`);
    clearError();
  } catch (e) {
    reportError(e);
    btn.disabled = false;
  }
});
