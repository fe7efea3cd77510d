// Cluster view: autopilot health table, leadership transfer, and write/read
// rate sparklines from this node's /metrics. Polled every 2 s while shown.

import { call, sleep } from './api.js';
import { $, el, clearError, reportError, pollFailed, pollOk, confirmAction } from './dom.js';
import { parseMetrics, sumMetric, rates, fmtRate, fmtDuration } from './value.js';

const POLL_MS = 2000;
const KEEP = 60;

// Counter samples {t, v}; restarted with the view, since a gap spent on
// another view would show up as one misleading averaged point.
let writes = [];
let reads = [];
let wake = null; // resolves the poll loop's wait early (after a transfer)

export function show(_route, signal) {
  writes = [];
  reads = [];
  $('cluster-status').textContent = '';
  for (const id of ['rate-writes', 'rate-reads']) $(id).textContent = '—';
  for (const id of ['spark-writes', 'spark-reads']) $(id).replaceChildren();
  // Nothing from the previous token stays on screen: after a switch to one
  // without operator:read, an old table beside the 403 would look current.
  $('members').tBodies[0].replaceChildren();
  $('cluster-summary').replaceChildren();
  delete $('cluster-summary').dataset.healthy;
  loop(signal).catch(reportError);
}

async function loop(signal) {
  while (!signal.aborted) {
    await Promise.all([pollHealth(signal), pollMetrics(signal)]);
    const early = new AbortController();
    wake = () => early.abort();
    const stop = () => early.abort();
    signal.addEventListener('abort', stop, { once: true });
    await sleep(POLL_MS, early.signal);
    signal.removeEventListener('abort', stop);
    wake = null;
  }
}

async function pollHealth(signal) {
  let res;
  try {
    // 429 is autopilot's "unhealthy", with the same report as the body.
    res = await call('GET', '/v1/operator/autopilot/health', { signal, ok: [429] });
  } catch (e) {
    if (!signal.aborted) pollFailed('health', e);
    return;
  }
  if (signal.aborted) return;
  pollOk('health');
  renderHealth(res.data || {});
}

function renderHealth(h) {
  const servers = h.Servers || [];
  const leader = servers.find((s) => s.Leader);
  const summary = $('cluster-summary');
  summary.dataset.healthy = String(!!h.Healthy);
  summary.replaceChildren(
    el('span', { className: `badge ${h.Healthy ? 'ok' : 'bad'}` }, h.Healthy ? 'healthy' : 'unhealthy'),
    ` ${servers.length} server${servers.length === 1 ? '' : 's'} · failure tolerance ${h.FailureTolerance ?? 0}`,
    leader ? ` · leader ${leader.Name || leader.ID}` : ' · no leader',
  );
  const rows = servers.map((s) => {
    const lag = leader ? Math.max(0, (leader.LastIndex || 0) - (s.LastIndex || 0)) : null;
    const name = s.Name || s.ID;
    return el('tr', { data: { member: s.ID, leader: String(!!s.Leader) }, className: s.Leader ? 'leader' : '' },
      el('td', {}, el('strong', {}, name), s.Name && s.Name !== s.ID ? el('div', { className: 'sub mono' }, s.ID) : null),
      el('td', { className: 'mono' }, s.Address || ''),
      el('td', {}, el('span', { className: `badge ${s.Leader ? 'accent' : ''}` }, s.Leader ? 'leader' : 'follower')),
      el('td', {}, s.Voter ? 'voter' : 'non-voter'),
      el('td', {}, el('span', { className: `badge ${s.Healthy ? 'ok' : 'bad'}` }, s.Healthy ? 'healthy' : 'unhealthy')),
      el('td', { className: 'num' }, fmtDuration(s.LastContact)),
      el('td', { className: `num${lag > 0 ? ' lagging' : ''}` }, lag === null ? '—' : String(lag)),
      el('td', { className: 'num' }, String(s.LastTerm ?? '')),
      el('td', { className: 'num' }, String(s.CommitIndex ?? '')),
      el('td', { className: 'num' }, String(s.AppliedIndex ?? '')),
    );
  });
  $('members').tBodies[0].replaceChildren(...rows);
}

async function pollMetrics(signal) {
  let text;
  try {
    text = (await call('GET', '/metrics', { signal, raw: true })).data;
  } catch (e) {
    if (!signal.aborted) pollFailed('metrics', e);
    return;
  }
  if (signal.aborted) return;
  pollOk('metrics');
  const samples = parseMetrics(text);
  const t = performance.now() / 1000;
  push(writes, { t, v: sumMetric(samples, 'raftkv_raft_applied_index') });
  push(reads, { t, v: sumMetric(samples, 'raftkv_http_requests_total', { route: 'kv', method: 'GET' }) });
  drawRate('writes', writes);
  drawRate('reads', reads);
}

function push(series, s) {
  series.push(s);
  if (series.length > KEEP) series.shift();
}

function drawRate(name, series) {
  const r = rates(series);
  $(`rate-${name}`).textContent = r.length ? fmtRate(r[r.length - 1]) : '—';
  const svg = $(`spark-${name}`);
  if (r.length < 2) {
    svg.replaceChildren();
    return;
  }
  // Fixed x slots (KEEP-1 rates across the width) so the line grows from
  // the right as samples arrive, like a strip chart.
  const W = 120;
  const H = 32;
  const max = Math.max(1, ...r);
  const step = W / (KEEP - 2);
  const x0 = W - (r.length - 1) * step;
  const pts = r.map((v, i) => `${(x0 + i * step).toFixed(1)},${(H - 1 - (v / max) * (H - 3)).toFixed(1)}`);
  svg.replaceChildren(
    el('polygon', { className: 'area', attrs: { points: `${x0.toFixed(1)},${H} ${pts.join(' ')} ${W},${H}` } }),
    el('polyline', { className: 'line', attrs: { points: pts.join(' '), 'vector-effect': 'non-scaling-stroke' } }),
  );
  svg.setAttribute('aria-label', `${name} per second, peak ${fmtRate(max)}`);
}

$('transfer-leader').addEventListener('click', async () => {
  $('cluster-status').textContent = '';
  const ok = await confirmAction('Hand leadership to another voter? Writes pause briefly while a new leader takes over.', 'Transfer');
  if (!ok) return;
  const btn = $('transfer-leader');
  btn.disabled = true;
  try {
    await call('POST', '/v1/operator/raft/transfer-leader', { raw: true });
    clearError();
    $('cluster-status').textContent = 'leadership transferred';
    if (wake) wake();
  } catch (e) {
    reportError(e);
  } finally {
    btn.disabled = false;
  }
});
