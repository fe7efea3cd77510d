// Sessions view: the session list (live by blocking query) with the keys
// each session holds. Acquiring or releasing a lock does not change the
// session list, so held keys are also re-read every 5 s.

import { call, watch, sleep } from './api.js';
import { $, el, clearError, reportError, pollFailed, pollOk, confirmAction } from './dom.js';
import { keyHash, fmtLockDelay } from './value.js';

const HELD_MS = 5000;

let held = new Map(); // session ID → keys (JSON string, to skip no-op redraws)
let cells = new Map(); // session ID → its td.held in the current table

export function show(_route, signal) {
  held = new Map();
  cells = new Map();
  $('sessions').tBodies[0].replaceChildren();
  $('sessions-empty').hidden = true;
  let list = [];
  watch('/v1/session/list', signal, {
    onData: (data) => {
      list = Array.isArray(data) ? data : [];
      render(list);
      refreshHeld(list, signal);
    },
    onFail: (e) => pollFailed('sessions', e),
    onOk: () => pollOk('sessions'),
  }).catch(reportError);
  (async () => {
    for (;;) {
      await sleep(HELD_MS, signal);
      if (signal.aborted) return;
      await refreshHeld(list, signal);
    }
  })().catch(reportError);
}

function render(list) {
  cells = new Map();
  const rows = list.map((s) => {
    const cell = el('td', { className: 'held' });
    cells.set(s.ID, cell);
    fillHeld(cell, held.get(s.ID));
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

function fillHeld(cell, json) {
  const keys = json ? JSON.parse(json) : [];
  const items = [];
  for (const k of keys) items.push(el('a', { href: keyHash(k), className: 'mono' }, k));
  cell.replaceChildren(...(items.length ? items : [el('span', { className: 'muted' }, json ? 'none' : '…')]));
}

async function refreshHeld(list, signal) {
  await Promise.all(list.map(async (s) => {
    let res;
    try {
      // 404: the session ended between the list and this read.
      res = await call('GET', `/v1/session/keys/${encodeURIComponent(s.ID)}`, { signal, ok: [404] });
    } catch (e) {
      if (!signal.aborted) pollFailed('held', e);
      return;
    }
    if (signal.aborted) return;
    pollOk('held');
    const json = JSON.stringify(Array.isArray(res.data) ? res.data : []);
    if (held.get(s.ID) === json) return;
    held.set(s.ID, json);
    const cell = cells.get(s.ID);
    if (cell) fillHeld(cell, json);
  }));
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
