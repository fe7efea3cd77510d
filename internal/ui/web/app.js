// Entry point: the hash router, the header bar (node name, token) and the
// error banner's close button.

import { call, getToken, setToken } from './api.js';
import { $, clearError, reportError } from './dom.js';
import { parseHash } from './value.js';
import * as cluster from './cluster.js';
import * as kv from './kv.js';
import * as sessions from './sessions.js';

const views = { cluster, kv, sessions };

// Every view gets a fresh AbortController: leaving the view (or reloading
// it after a token change) cancels its blocking queries and poll timers.
let current = null;

function route() {
  const r = parseHash(location.hash);
  if (current) current.abort();
  current = new AbortController();
  clearError();
  for (const name of Object.keys(views)) {
    $(`view-${name}`).hidden = name !== r.view;
    const link = $(`nav-${name}`);
    if (name === r.view) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  try {
    views[r.view].show(r, current.signal);
  } catch (e) {
    reportError(e);
  }
}

// The node name is decoration: without the right token it stays blank
// rather than raising a banner on every page.
async function loadNodeName() {
  $('node-name').textContent = '';
  $('node').hidden = true;
  try {
    const { data } = await call('GET', '/v1/agent/self');
    const name = data && data.Config && data.Config.NodeName;
    if (name) {
      $('node-name').textContent = name;
      $('node').hidden = false;
    }
  } catch {
    // deliberately silent, see above
  }
}

$('token').value = getToken();
$('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  setToken($('token').value.trim());
  loadNodeName();
  route();
});

$('error-close').addEventListener('click', () => {
  $('error').hidden = true;
});

window.addEventListener('hashchange', route);
loadNodeName();
route();
