// Key browser: folder listings, prefix search, the key view with its editor,
// check-and-set saves and conflict handling. Listings and keys stay live
// through blocking queries.

import { call, watch } from './api.js';
import { $, el, clearError, showError, reportError, pollFailed, pollOk, confirmAction } from './dom.js';
import {
  addressable, b64ToBytes, describe, folderHash, keyHash, kvPath, searchHash, parentPrefix, parseFlags,
  unaddressableError,
} from './value.js';

// st is the current route; handlers compare against it after every await
// so that an answer arriving after navigation changes nothing.
let st = null;

export function show(route, signal) {
  st = { route, signal, key: null };
  $('kv-status').textContent = '';
  renderCrumbs(route);
  const isKey = route.mode === 'key';
  $('kv-folder').hidden = isKey;
  $('kv-key').hidden = !isKey;
  if (isKey) showKey(route.key, signal);
  else showFolder(route, signal);
}

function renderCrumbs(route) {
  const path = route.mode === 'key' ? route.key : route.prefix;
  const folder = route.mode === 'folder' ? path : parentPrefix(path);
  const parts = [el('a', { href: folderHash('') }, 'root')];
  let acc = '';
  for (const seg of folder.split('/').slice(0, -1)) {
    acc += seg + '/';
    parts.push(el('span', { className: 'sep', attrs: { 'aria-hidden': 'true' } }, '/'), el('a', { href: folderHash(acc) }, seg));
  }
  if (route.mode !== 'folder') {
    const last = path.slice(folder.length) || path;
    const label = route.mode === 'search' ? `${last}… (prefix search)` : last;
    parts.push(el('span', { className: 'sep', attrs: { 'aria-hidden': 'true' } }, '/'), el('span', { className: 'here' }, label));
  }
  const links = parts.filter((p) => p.tagName === 'A');
  if (route.mode === 'folder') links[links.length - 1].setAttribute('aria-current', 'page');
  $('breadcrumbs').replaceChildren(...parts);
}

// ---- folders and prefix search ----

function showFolder(route, signal) {
  const prefix = route.prefix;
  const search = route.mode === 'search';
  // Names are shown relative to the folder: for a search "app/co" that is
  // "app/", so "app/config" reads "config".
  const base = search ? parentPrefix(prefix) : prefix;
  $('kv-create').hidden = true;
  $('kv-delete-folder').hidden = search || prefix === '';
  $('kv-list').replaceChildren();
  $('kv-empty').hidden = true;
  $('kv-filtered').hidden = true;
  let last = null;
  watch(`${kvPath(prefix)}?keys&separator=/`, signal, {
    ok: [404], // nothing under the prefix: an empty folder
    onData: (keys, res) => {
      // The server drops keys the token may not list; this header is the
      // only sign of them.
      $('kv-filtered').hidden = res.headers.get('X-Consul-Results-Filtered-By-ACLs') !== 'true';
      const list = Array.isArray(keys) ? keys : [];
      const sig = JSON.stringify(list);
      if (sig === last) return; // the index moved for a write elsewhere
      last = sig;
      renderList(list, prefix, base);
    },
    onFail: (e) => pollFailed('kv-list', e),
    onOk: () => pollOk('kv-list'),
  }).catch(reportError);
}

function renderList(keys, prefix, base) {
  const frag = document.createDocumentFragment();
  for (const k of keys) {
    // A key literally named like the folder ("app/" listed under "app/")
    // is a key, not the folder again.
    const folder = k.endsWith('/') && k !== prefix;
    const name = k.slice(base.length) || k;
    // Such keys exist (written through /v1/txn, say) but no request path
    // reaches them, so they are listed without a link.
    const item = addressable(k)
      ? el('a', { href: folder ? folderHash(k) : keyHash(k) }, name)
      : el('span', { className: 'plain', title: unaddressableError(k).message },
        name, el('small', { className: 'muted' }, 'not addressable here'));
    frag.append(el('li', { data: { key: k }, className: folder ? 'folder' : 'key' }, item));
  }
  $('kv-list').replaceChildren(frag);
  $('kv-empty').hidden = keys.length > 0;
}

$('kv-search-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const q = $('kv-search').value;
  // Cleared so the next search starts from an empty box; the breadcrumbs
  // show what is listed.
  $('kv-search').value = '';
  location.hash = q === '' || q.endsWith('/') ? folderHash(q) : searchHash(q);
});

$('kv-new').addEventListener('click', () => {
  if (!st || st.route.view !== 'kv') return;
  $('kv-create-key').value = st.route.prefix || '';
  $('kv-create-value').value = '';
  $('kv-create-flags').value = '';
  $('kv-create').hidden = false;
  $('kv-create-key').focus();
});

$('kv-create-cancel').addEventListener('click', () => {
  $('kv-create').hidden = true;
});

$('kv-create').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const { signal } = st;
  const key = $('kv-create-key').value;
  const flags = parseFlags($('kv-create-flags').value);
  if (key === '') return showError('the key name is empty');
  if (!addressable(key)) return showError(unaddressableError(key).message);
  if (flags === null) return showError('flags must be an unsigned 64-bit integer');
  const btn = $('kv-create-submit');
  btn.disabled = true;
  try {
    // cas=0: create only, never overwrite a key someone else made.
    const res = await call('PUT', `${kvPath(key)}?cas=0&flags=${flags}`, { body: $('kv-create-value').value });
    if (signal.aborted) return;
    if (res.data === true) {
      clearError();
      location.hash = keyHash(key);
    } else {
      showError('key already exists');
    }
  } catch (e) {
    reportError(e);
  } finally {
    btn.disabled = false;
  }
});

$('kv-delete-folder').addEventListener('click', async () => {
  const { route, signal } = st;
  const prefix = route.prefix;
  if (route.mode !== 'folder' || !prefix) return;
  if (!(await confirmAction(`Delete the folder “${prefix}” and every key under it?`, 'Delete folder'))) return;
  try {
    await call('DELETE', `${kvPath(prefix)}?recurse`);
    clearError();
    if (!signal.aborted) location.hash = folderHash(parentPrefix(prefix));
  } catch (e) {
    reportError(e);
  }
});

// ---- one key ----
//
// k.entry is the newest entry seen (null when absent), k.loaded what the
// editor was filled from: its ModifyIndex is the CAS index for saves, so a
// save never overwrites a version the user has not seen.

function showKey(key, signal) {
  const k = { key, signal, entry: null, seen: 0, loaded: null, conflict: null, busy: false };
  st.key = k;
  $('kv-key-name').textContent = key;
  for (const id of ['kv-absent', 'kv-changed', 'kv-conflict', 'kv-binary-note']) $(id).hidden = true;
  $('kv-format').textContent = '';
  $('kv-value').textContent = '';
  for (const dd of $('kv-meta').querySelectorAll('dd')) dd.textContent = '';
  $('kv-editor').value = '';
  $('kv-editor').readOnly = false;
  $('kv-editor').disabled = true; // until the first answer fills it
  $('kv-edit-flags').value = '';
  updateButtons(k);
  watch(kvPath(key), signal, {
    ok: [404],
    onData: (data, res) => onEntry(k, data, res.index),
    onFail: (e) => pollFailed('kv-key', e),
    onOk: () => pollOk('kv-key'),
  }).catch(reportError);
}

// accept records an answer unless an older one arrives late (a blocking
// answer overtaken by the read that follows a save).
function accept(k, data, index) {
  if (index && index < k.seen) return false;
  k.seen = Math.max(k.seen, index || 0);
  const entry = Array.isArray(data) && data.length ? data[0] : null;
  if (entry) entry.view = describe(b64ToBytes(entry.Value));
  k.entry = entry;
  renderEntry(k);
  return true;
}

function onEntry(k, data, index) {
  if (!accept(k, data, index)) return;
  if (k.busy) return; // the save in flight reloads the editor itself
  if (k.conflict) {
    k.conflict.entry = k.entry; // overwrite or delete then uses the newest index
    renderTheirs(k);
    updateButtons(k);
    return;
  }
  if (!k.loaded || !dirty(k)) loadEditor(k);
  else if ((k.entry ? k.entry.ModifyIndex : 0) !== k.loaded.index) $('kv-changed').hidden = false;
}

async function fetchEntry(k) {
  const res = await call('GET', kvPath(k.key), { ok: [404] });
  if (!k.signal.aborted) accept(k, res.data, res.index);
}

function renderEntry(k) {
  const e = k.entry;
  $('kv-absent').hidden = !!e;
  $('kv-format').textContent = e ? e.view.format : '';
  $('kv-format').hidden = !e;
  $('kv-value').textContent = e ? e.view.display : '';
  $('kv-value').classList.toggle('gone', !e);
  for (const dd of $('kv-meta').querySelectorAll('dd')) {
    const f = dd.dataset.field;
    if (f === 'Session') {
      dd.replaceChildren(e && e.Session ? el('a', { href: '#/sessions', className: 'mono' }, e.Session) : '—');
    } else {
      dd.textContent = e ? String(e[f] ?? 0) : '—';
    }
  }
  updateButtons(k);
}

function loadEditor(k) {
  const e = k.entry;
  const view = e ? e.view : describe(new Uint8Array(0));
  const ed = $('kv-editor');
  const binary = view.text === null;
  ed.disabled = binary;
  ed.readOnly = false;
  ed.value = binary ? '' : view.text;
  $('kv-binary-note').hidden = !binary;
  $('kv-edit-flags').value = e ? String(e.Flags ?? 0) : '0';
  // text is read back from the textarea, which normalises line endings:
  // comparing against it (not the raw value) keeps "\r\n" from looking
  // like an edit, and bytes lets an untouched value be saved unchanged.
  k.loaded = {
    index: e ? e.ModifyIndex : 0,
    bytes: e ? b64ToBytes(e.Value) : new Uint8Array(0),
    text: ed.value,
    flags: $('kv-edit-flags').value,
  };
  $('kv-changed').hidden = true;
  updateButtons(k);
}

const dirty = (k) => $('kv-editor').value !== k.loaded.text || $('kv-edit-flags').value !== k.loaded.flags;

function updateButtons(k) {
  const blocked = !k.loaded || k.busy || !!k.conflict;
  $('kv-save').disabled = blocked;
  $('kv-delete').disabled = blocked || k.loaded.index === 0;
  $('kv-conflict-overwrite').disabled = k.busy;
  // Nothing to delete once the key is gone.
  $('kv-conflict-delete').disabled = k.busy || !(k.conflict && k.conflict.entry);
  $('kv-conflict-discard').disabled = k.busy;
}

function setStatus(s) {
  $('kv-status').textContent = s;
}

$('kv-edit').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const k = st && st.key;
  if (!k || !k.loaded || k.busy || k.conflict) return;
  const flags = parseFlags($('kv-edit-flags').value);
  if (flags === null) return showError('flags must be an unsigned 64-bit integer');
  const text = $('kv-editor').value;
  const body = text === k.loaded.text ? k.loaded.bytes : text;
  const mine = typeof body === 'string' ? text : describe(body).display;
  save(k, { body, mine, flags }, k.loaded.index);
});

// save PUTs with check-and-set. false means the key moved on since index:
// nothing is written and both versions are shown side by side.
async function save(k, mine, index) {
  setStatus('saving…');
  k.busy = true;
  updateButtons(k);
  try {
    const res = await call('PUT', `${kvPath(k.key)}?cas=${index}&flags=${mine.flags}`, { body: mine.body });
    if (k.signal.aborted) return;
    await fetchEntry(k);
    if (k.signal.aborted) return;
    if (res.data === true) {
      clearError();
      hideConflict(k);
      loadEditor(k);
      setStatus('saved');
    } else {
      setStatus('');
      showConflict(k, 'save', mine, 'Someone changed this key after you loaded it. Nothing was written.');
    }
  } catch (e) {
    setStatus('');
    reportError(e);
  } finally {
    k.busy = false;
    updateButtons(k);
  }
}

// showConflict shows mine beside the current version. op is what was
// refused: after a 'save' the user may overwrite, after a 'delete' only
// delete (never write the editor's content: they asked for a delete).
function showConflict(k, op, mine, reason) {
  k.conflict = { op, mine, entry: k.entry };
  const del = op === 'delete';
  $('kv-conflict-title').textContent = del ? 'Not deleted: the key changed' : 'Not saved: the key changed';
  $('kv-conflict-mine-label').textContent = del ? 'You asked to delete' : 'Yours';
  $('kv-conflict-overwrite').hidden = del;
  $('kv-conflict-delete').hidden = !del;
  $('kv-conflict-reason').textContent = reason;
  $('kv-conflict-mine').textContent = mine.mine;
  renderTheirs(k);
  $('kv-conflict').hidden = false;
  $('kv-conflict').scrollIntoView({ block: 'nearest' });
  $('kv-changed').hidden = true;
  $('kv-editor').readOnly = true;
  updateButtons(k);
}

function renderTheirs(k) {
  const e = k.conflict.entry;
  $('kv-conflict-theirs').textContent = e ? e.view.display : '(the key does not exist now)';
  $('kv-conflict-index').textContent = e ? String(e.ModifyIndex) : '— (deleted)';
}

function hideConflict(k) {
  k.conflict = null;
  $('kv-conflict').hidden = true;
  $('kv-editor').readOnly = false;
}

$('kv-conflict-overwrite').addEventListener('click', () => {
  const k = st && st.key;
  if (!k || !k.conflict || k.conflict.op !== 'save' || k.busy) return;
  const e = k.conflict.entry;
  // cas=0 when it was deleted meanwhile: recreate, but only if still absent.
  save(k, k.conflict.mine, e ? e.ModifyIndex : 0);
});

$('kv-conflict-discard').addEventListener('click', () => {
  const k = st && st.key;
  if (!k || !k.conflict || k.busy) return;
  setStatus('');
  hideConflict(k);
  loadEditor(k);
  clearError();
});

$('kv-conflict-delete').addEventListener('click', () => {
  const k = st && st.key;
  if (!k || !k.conflict || k.conflict.op !== 'delete' || !k.conflict.entry || k.busy) return;
  const e = k.conflict.entry;
  remove(k, e.ModifyIndex, { mine: e.view.display });
});

const DELETE_CONFLICT = 'Someone changed this key after you loaded it, so it was not deleted. '
  + 'Delete anyway removes the current version shown here; Discard loads it.';

$('kv-delete').addEventListener('click', async () => {
  const k = st && st.key;
  if (!k || !k.loaded || k.busy || k.conflict || k.loaded.index === 0) return;
  setStatus('');
  // Taken before the dialog: a live update while it is open may reload the
  // editor, and the delete must be of the version the user was asked about.
  const { index, bytes } = k.loaded;
  const mine = { mine: describe(bytes).display };
  if (!(await confirmAction(`Delete the key “${k.key}”?`, 'Delete'))) return;
  if (k.signal.aborted || k.busy || k.conflict) return;
  // Changed while the dialog was open (or the editor was already behind
  // the value shown): a CAS delete at index cannot succeed, so say why
  // without sending it.
  if ((k.entry ? k.entry.ModifyIndex : 0) !== index) {
    showConflict(k, 'delete', mine, DELETE_CONFLICT);
    return;
  }
  remove(k, index, mine);
});

// remove deletes with check-and-set; false means the key moved on since
// index, and the newer version is shown for the user to decide again.
async function remove(k, index, mine) {
  k.busy = true;
  updateButtons(k);
  try {
    const res = await call('DELETE', `${kvPath(k.key)}?cas=${index}`);
    if (k.signal.aborted) return;
    if (res.data === true) {
      clearError();
      location.hash = folderHash(parentPrefix(k.key));
      return;
    }
    await fetchEntry(k);
    if (k.signal.aborted) return;
    showConflict(k, 'delete', mine, DELETE_CONFLICT);
  } catch (e) {
    reportError(e);
  } finally {
    k.busy = false;
    updateButtons(k);
  }
}
