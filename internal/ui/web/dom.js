// Small DOM helpers shared by the views: element building, the error
// banner and the confirmation dialog.

import { ApiError, isAbort } from './api.js';

export const $ = (id) => document.getElementById(id);

// el builds an element; props are properties except `data` (dataset) and
// `attrs` (attributes, for SVG and aria-*). Strings become text nodes, so
// keys and values from the store are never parsed as HTML.
export function el(tag, props = {}, ...children) {
  const svg = tag === 'svg' || tag === 'polyline' || tag === 'polygon';
  const e = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'data') Object.assign(e.dataset, v);
    else if (k === 'attrs') for (const [a, av] of Object.entries(v)) e.setAttribute(a, av);
    else if (k === 'className' && svg) e.setAttribute('class', v);
    else e[k] = v;
  }
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
}

export function errorText(e) {
  if (e instanceof ApiError) return e.message;
  if (e instanceof TypeError) return `network error: ${e.message}`;
  return String((e && e.message) || e);
}

export function showError(msg) {
  $('error-text').textContent = msg;
  $('error').hidden = false;
}

export function clearError() {
  $('error').hidden = true;
  $('error-text').textContent = '';
  pollShown.clear();
}

// reportError shows a failed user action; an aborted request is the view
// changing under it, not a failure.
export function reportError(e) {
  if (isAbort(e)) return;
  showError(errorText(e));
}

// Background loops (polls, watches) report each distinct failure once, so
// a closed banner stays closed while the same 403 repeats every 2 s, and a
// loop that recovers takes its own message away again.
const pollShown = new Map();

export function pollFailed(source, e) {
  if (isAbort(e)) return;
  const msg = errorText(e);
  if (pollShown.get(source) === msg) return;
  pollShown.set(source, msg);
  showError(msg);
}

export function pollOk(source) {
  const msg = pollShown.get(source);
  if (msg === undefined) return;
  pollShown.delete(source);
  if (!$('error').hidden && $('error-text').textContent === msg) {
    $('error').hidden = true;
  }
}

// confirmAction asks in the page's own modal dialog and resolves to true
// only for the OK button (Escape and Cancel resolve to false). Plain
// buttons, not <form method="dialog">: the CSP has form-action 'none'.
export function confirmAction(text, okLabel = 'OK') {
  const d = $('confirm');
  if (d.open) return Promise.resolve(false);
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = okLabel;
  d.returnValue = '';
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
    d.showModal();
  });
}

// Bound once at import; the dialog is static in index.html.
$('confirm-ok').addEventListener('click', () => $('confirm').close('ok'));
$('confirm-cancel').addEventListener('click', () => $('confirm').close('cancel'));
