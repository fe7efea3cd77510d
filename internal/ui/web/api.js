// HTTP access to the raftkv API: the token header, error bodies, and the
// Consul blocking-query loop.

const TOKEN_KEY = 'raftkv.token';

export function getToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return ''; // storage disabled: the page still works without ACLs
  }
}

export function setToken(t) {
  try {
    if (t) localStorage.setItem(TOKEN_KEY, t);
    else localStorage.removeItem(TOKEN_KEY);
  } catch { /* see getToken */ }
}

// ApiError carries the status and the server's one-line plain-text reason,
// which the banner shows verbatim (a 403 names the missing permission).
export class ApiError extends Error {
  constructor(status, body) {
    super(`${status} ${body}`);
    this.name = 'ApiError';
    this.status = status;
    this.body = body;
  }
}

export const isAbort = (e) => e && e.name === 'AbortError';

// call sends one request. ok lists non-2xx statuses that are answers rather
// than failures (404 = absent for keys, 429 = unhealthy for autopilot).
// It resolves to {status, index, data, headers}; data is parsed JSON unless
// raw.
export async function call(method, path, { body, signal, ok = [], raw = false } = {}) {
  const headers = {};
  const token = getToken();
  if (token) headers['X-Consul-Token'] = token;
  const res = await fetch(path, { method, headers, body, signal, cache: 'no-store' });
  const index = Number(res.headers.get('X-Consul-Index')) || 0;
  const text = await res.text();
  if (!res.ok && !ok.includes(res.status)) {
    throw new ApiError(res.status, text.trim() || res.statusText);
  }
  let data = text;
  if (!raw) data = text.trim() === '' ? null : JSON.parse(text);
  return { status: res.status, index, data, headers: res.headers };
}

// sleep resolves after ms, or at once when signal aborts (never rejects, so
// loops just check signal.aborted afterwards).
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}

// watch runs a Consul blocking query until signal aborts, calling
// onData(data, response) for the first answer and whenever the index moves.
// Failures worth retrying (network, 5xx) go to onFail and back off from 1 s
// to 10 s; a 4xx (e.g. 403) goes to onFail and ends the watch, since asking
// again with the same token cannot succeed. onOk follows every success.
export async function watch(path, signal, { onData, onFail, onOk, ok = [] }) {
  const sep = path.includes('?') ? '&' : '?';
  let index = 0;
  let backoff = 1000;
  let first = true;
  while (!signal.aborted) {
    const started = Date.now();
    let res;
    try {
      res = await call('GET', index > 0 ? `${path}${sep}index=${index}&wait=55s` : path, { signal, ok });
    } catch (e) {
      if (isAbort(e) || signal.aborted) return;
      if (onFail) onFail(e);
      if (e instanceof ApiError && e.status < 500) return;
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, 10000);
      continue;
    }
    if (signal.aborted) return;
    backoff = 1000;
    if (onOk) onOk();
    if (first || res.index !== index) {
      first = false;
      // Consul's rule: an index that went backwards (a restore) restarts
      // from 0 rather than blocking on a number that may never come again.
      index = res.index < index ? 0 : res.index;
      onData(res.data, res);
    }
    if (res.index === 0) return; // no index header: not a blocking endpoint
    // A busy cluster can move the index on every write; a short floor keeps
    // one open page from turning into a request storm.
    const spent = Date.now() - started;
    if (spent < 250) await sleep(250 - spent, signal);
  }
}
