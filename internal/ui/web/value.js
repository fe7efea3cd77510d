// Pure helpers (no DOM, no fetch) so that node can import and check them.

// fatal: bytes that are not UTF-8 must fall back to hex rather than show
// U+FFFD and be silently rewritten on save. ignoreBOM keeps a leading BOM
// in the text so an unchanged value round-trips byte for byte.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// Unicode Cc (C0, DEL and C1) except tab, newline and carriage return.
const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/;

// Hex dumps of big values would freeze the page; the rest is elided.
const HEX_LIMIT = 64 * 1024;

export function b64ToBytes(s) {
  if (!s) return new Uint8Array(0);
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// describe decides how a value is shown: format is json, text or hex;
// display is what the value pane shows; text is the editable form (null for
// binary values, which the textarea cannot hold without corrupting them).
export function describe(bytes) {
  let text;
  try {
    text = utf8.decode(bytes);
  } catch {
    return { format: 'hex', display: hexdump(bytes), text: null };
  }
  const first = text.trimStart()[0];
  if (first === '{' || first === '[') {
    try {
      const v = JSON.parse(text);
      // JSON.parse only decides that it is JSON: the shown text is the
      // original re-indented, since a parse/stringify round trip rounds big
      // integers, rewrites 1.50 as 1.5 and drops duplicate keys.
      if (v !== null && typeof v === 'object') return { format: 'json', display: indentJSON(text), text };
    } catch { /* not JSON: text or hex below */ }
  }
  if (CONTROL.test(text)) return { format: 'hex', display: hexdump(bytes), text: null };
  return { format: 'text', display: text, text };
}

// indentJSON re-indents valid JSON token by token (2 spaces a level),
// copying every string and number exactly as written.
export function indentJSON(text) {
  let out = '';
  let depth = 0;
  const nl = () => '\n' + '  '.repeat(depth);
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1; // skip the escaped char
      out += text.slice(i, j + 1);
      i = j;
    } else if (c === '{' || c === '[') {
      let j = i + 1;
      while (JSON_SPACE.includes(text[j])) j++;
      if (text[j] === '}' || text[j] === ']') {
        out += c + text[j]; // empty: stays on one line
        i = j;
      } else {
        depth++;
        out += c + nl();
      }
    } else if (c === '}' || c === ']') {
      depth--;
      out += nl() + c;
    } else if (c === ',') {
      out += ',' + nl();
    } else if (c === ':') {
      out += ': ';
    } else if (!JSON_SPACE.includes(c)) {
      out += c;
    }
  }
  return out;
}

// JSON's insignificant whitespace (not \s: other spaces are not JSON).
const JSON_SPACE = ' \t\n\r';

// hexdump formats like `hexdump -C`: offset, 16 bytes in two groups, ASCII.
export function hexdump(bytes) {
  const lines = [];
  const end = Math.min(bytes.length, HEX_LIMIT);
  for (let off = 0; off < end; off += 16) {
    let hex = '';
    let ascii = '';
    for (let i = 0; i < 16; i++) {
      if (i === 8) hex += ' ';
      const b = bytes[off + i];
      if (off + i < end) {
        hex += b.toString(16).padStart(2, '0') + ' ';
        ascii += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.';
      } else {
        hex += '   ';
      }
    }
    lines.push(`${off.toString(16).padStart(8, '0')}  ${hex} |${ascii}|`);
  }
  if (bytes.length > end) lines.push(`… ${bytes.length - end} more bytes not shown`);
  return lines.join('\n');
}

// Keys go into URLs segment by segment so that '/' stays a separator while
// '?', '#', '%', spaces and the like cannot change the request's meaning.
export function encodeKey(key) {
  return key.split('/').map(encodeURIComponent).join('/');
}

// addressable: whether /v1/kv/<key> reaches this very key. Browsers resolve
// "." and ".." segments (escaped as %2e too) and the server redirects paths
// with empty segments, so "x/../y" would read, write or delete "y". Only a
// final empty segment (a folder's trailing '/') survives; "" is the root.
export function addressable(key) {
  if (key.startsWith('/')) return false;
  const segs = key.split('/');
  return segs.every((s, i) => s !== '.' && s !== '..' && (s !== '' || i === segs.length - 1));
}

export function unaddressableError(key) {
  return new Error(`key ${JSON.stringify(key)} cannot be addressed in a URL path (a "." or ".." or empty segment); use the API's /v1/txn or the CLI`);
}

// kvPath is the only place a key becomes a request path; it throws rather
// than let a request land on another key. The URL check is defence in
// depth: whatever the URL parser would rewrite is refused too (the origin
// plays no part in resolving an absolute path, so any base will do).
export function kvPath(key) {
  const path = '/v1/kv/' + encodeKey(key);
  if (!addressable(key) || new URL(path, 'http://localhost').pathname !== path) throw unaddressableError(key);
  return path;
}

function decodeSegment(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    return s; // a stray '%' typed into the address bar
  }
}

// Hash routes: a trailing '/' in the raw hash means a folder, so a key whose
// name itself ends in '/' (e.g. "app/") gets its last '/' encoded as %2F.
export const folderHash = (prefix) => '#/kv/' + encodeKey(prefix);
export const searchHash = (prefix) => '#/kv/' + encodeKey(prefix) + '?search';
export function keyHash(key) {
  const enc = encodeKey(key);
  return '#/kv/' + (enc.endsWith('/') ? enc.slice(0, -1) + '%2F' : enc);
}

export function parseHash(hash) {
  const h = hash.replace(/^#/, '');
  if (h === '/sessions') return { view: 'sessions' };
  if (h === '/kv' || h.startsWith('/kv/')) {
    let raw = h.slice(4);
    const search = raw.endsWith('?search');
    if (search) raw = raw.slice(0, -'?search'.length);
    const path = raw.split('/').map(decodeSegment).join('/');
    if (search && path !== '' && !path.endsWith('/')) return { view: 'kv', mode: 'search', prefix: path };
    if (raw === '' || raw.endsWith('/')) return { view: 'kv', mode: 'folder', prefix: path };
    return { view: 'kv', mode: 'key', key: path };
  }
  return { view: 'cluster' };
}

// parentPrefix is the folder holding a key or folder: "a/b/c" and "a/b/c/"
// → "a/b/", "a" → "" (the root).
export function parentPrefix(p) {
  const s = p.endsWith('/') ? p.slice(0, -1) : p;
  const i = s.lastIndexOf('/');
  return i < 0 ? '' : s.slice(0, i + 1);
}

// parseFlags accepts what the API accepts (a uint64 in decimal); empty is 0.
// It returns the decimal string, or null when invalid. BigInt because JS
// numbers lose precision above 2^53.
export function parseFlags(s) {
  const t = s.trim();
  if (t === '') return '0';
  if (!/^\d+$/.test(t) || BigInt(t) > 0xffffffffffffffffn) return null;
  return BigInt(t).toString();
}

// parseMetrics reads the Prometheus text format into {name, labels, value}.
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (line === '' || line[0] === '#') continue;
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[2]) {
      for (const l of m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
        labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
      }
    }
    const v = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    out.push({ name: m[1], labels, value: v });
  }
  return out;
}

// sumMetric adds the samples of name whose labels include all of match.
export function sumMetric(samples, name, match = {}) {
  let sum = 0;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(match).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  }
  return sum;
}

// rates turns counter samples {t (seconds), v} into per-second rates; a
// counter that went down (a restarted node) counts as 0, not negative.
export function rates(samples) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = samples[i].t - samples[i - 1].t;
    const dv = samples[i].v - samples[i - 1].v;
    out.push(dt > 0 && dv > 0 ? dv / dt : 0);
  }
  return out;
}

export function fmtRate(r) {
  return Number.isFinite(r) ? `${r.toFixed(1)}/s` : '—';
}

const UNIT_MS = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1e3, m: 6e4, h: 3.6e6 };

// durationMs parses a Go duration string ("12.3ms", "1m2s"); NaN otherwise.
export function durationMs(s) {
  if (typeof s !== 'string' || !/^-?(\d+(\.\d*)?(ns|us|µs|μs|ms|s|m|h))+$|^0$/.test(s)) return NaN;
  let ms = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d*)?)(ns|us|µs|μs|ms|s|m|h)/g)) ms += Number(m[1]) * UNIT_MS[m[2]];
  return s[0] === '-' ? -ms : ms;
}

export function fmtDuration(s) {
  const ms = durationMs(s);
  if (!Number.isFinite(ms)) return s || '—';
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(1).replace(/\.0$/, '') : Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 1000)} s`;
}

// lockDelay is in nanoseconds on the wire (Consul encodes it so in lists).
export function fmtLockDelay(ns) {
  const ms = typeof ns === 'number' ? ns / 1e6 : durationMs(ns);
  if (!Number.isFinite(ms)) return String(ns ?? '—');
  return `${Number((ms / 1000).toFixed(3))} s`;
}
