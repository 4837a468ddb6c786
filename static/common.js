// Shared helpers of the server's own pages (chat, ticker, sports, map).
// DOM is always built with createElement/textContent: user data is never parsed as HTML.

/** Error of an HTTP API call: status plus the server's {error:{code,message}}. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

/** JSON API call on the same origin (the session cookie goes along). */
export async function api(method, path, body, { form } = {}) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (form) {
    init.body = form;
  } else if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, 'network', 'network error: ' + err.message);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch (_) { data = null; }
  }
  if (!res.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(res.status, e.code || String(res.status), e.message || res.statusText || `HTTP ${res.status}`);
  }
  return data ?? {};
}

/** The logged-in user ({id,name,role}) or null. */
export async function whoami() {
  try {
    const r = await api('GET', '/api/me');
    return r.user || null;
  } catch (err) {
    if (err.status === 401 || err.status === 403 || err.status === 404) return null;
    throw err;
  }
}

/** Channels of the demo feeds, optionally only those of one namespace (e.g. 'ticker'). */
export async function feedChannels(namespace) {
  const r = await api('GET', '/api/feeds');
  const list = Array.isArray(r) ? r : r.channels || [];
  const names = list.map((c) => (typeof c === 'string' ? c : c.channel)).filter(Boolean);
  return namespace ? names.filter((c) => c.startsWith(namespace + ':')) : names;
}

/**
 * Element builder: h('div', {class:'x', onclick: fn, 'aria-label': '…'}, child, 'text', …)
 * Strings become text nodes. `dataset`, `style` (object) and boolean attributes handled.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k in el && typeof v !== 'string') el[k] = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Remove all children. */
export function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }

/** A URL safe to put in src/href: same-origin path or http(s). Else null. */
export function safeUrl(url) {
  if (typeof url !== 'string' || !url) return null;
  if (url.startsWith('/') && !url.startsWith('//')) return url;
  try {
    const u = new URL(url, location.href);
    if (u.protocol === 'http:' || u.protocol === 'https:') return u.href;
  } catch (_) { /* fallthrough */ }
  return null;
}

export function fmtTime(ts) {
  const d = new Date(ts);
  if (isNaN(d)) return '';
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

export function fmtDateTime(ts) {
  const d = new Date(ts);
  if (isNaN(d)) return '';
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return fmtTime(ts);
  return d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

export function fmtDay(ts) {
  const d = new Date(ts);
  const today = new Date();
  const yest = new Date(Date.now() - 86400000);
  if (d.toDateString() === today.toDateString()) return 'Today';
  if (d.toDateString() === yest.toDateString()) return 'Yesterday';
  return d.toLocaleDateString([], { weekday: 'long', month: 'long', day: 'numeric' });
}

export function fmtSize(n) {
  if (typeof n !== 'number' || !isFinite(n)) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function fmtNum(n, digits = 2) {
  if (typeof n !== 'number' || !isFinite(n)) return '–';
  return n.toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function fmtInt(n) {
  if (typeof n !== 'number' || !isFinite(n)) return '–';
  return Math.round(n).toLocaleString();
}

const STATE_TEXT = {
  idle: 'Offline', connecting: 'Connecting…', open: 'Online', reconnecting: 'Reconnecting…', closed: 'Offline',
};

/** Keep a status pill element in sync with a ChatClient's connection state. */
export function bindConnectionPill(client, el) {
  let timer = null;
  const render = () => {
    const st = client.state;
    el.dataset.state = st;
    let text = STATE_TEXT[st] || st;
    if (st === 'reconnecting' && client.reconnectAt) {
      const s = Math.ceil((client.reconnectAt - Date.now()) / 1000);
      if (s > 1 && !client.ws) text = `Reconnecting in ${s}s…`;
    }
    el.textContent = text;
    el.title = `Connection: ${text}`;
  };
  client.on('state', () => {
    render();
    clearInterval(timer);
    if (client.state === 'reconnecting') timer = setInterval(render, 1000);
  });
  render();
  // the browser knows when the network comes back: skip the remaining wait
  window.addEventListener('online', () => client.reconnectNow());
  // after a sleep (phone locked, laptop lid) the socket may be dead without a close event
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState !== 'visible') return;
    if (client.state === 'open') client.checkAlive(); else client.reconnectNow();
  });
}

/** Short-lived notice at the bottom of the page. */
export function toast(text, kind = 'info', ms = 4000) {
  let box = document.getElementById('toasts');
  if (!box) {
    box = h('div', { id: 'toasts', class: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.appendChild(box);
  }
  const t = h('div', { class: `toast toast-${kind}` }, text);
  box.appendChild(t);
  setTimeout(() => t.remove(), ms);
}

/** Initials for an avatar. */
export function initials(name) {
  const s = String(name || '?').replace(/[^A-Za-z0-9]+/g, ' ').trim();
  if (!s) return '?';
  const parts = s.split(' ');
  return (parts.length > 1 ? parts[0][0] + parts[1][0] : s.slice(0, 2)).toUpperCase();
}

/** A stable hue for a string (avatar colours). */
export function hue(str) {
  let x = 0;
  for (const ch of String(str)) x = (x * 31 + ch.codePointAt(0)) >>> 0;
  return x % 360;
}

export function avatar(user, size = 'md') {
  const name = (user && user.name) || '?';
  return h('span', {
    class: `avatar avatar-${size}`, 'aria-hidden': 'true',
    style: { background: `hsl(${hue(name)} 55% 45%)` },
  }, initials(name));
}

/** Debounce. */
export function debounce(fn, ms) {
  let t = null;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

const ICONS = {
  plus: 'M12 5v14M5 12h14',
  clip: 'M21 11.5l-8.6 8.6a5.5 5.5 0 0 1-7.8-7.8l9.2-9.2a3.7 3.7 0 0 1 5.2 5.2l-9.2 9.2a1.8 1.8 0 0 1-2.6-2.6l8.5-8.5',
  users: 'M16 20v-1.5a3.5 3.5 0 0 0-3.5-3.5h-5A3.5 3.5 0 0 0 4 18.5V20M10 11.5a3.5 3.5 0 1 0 0-7 3.5 3.5 0 0 0 0 7zM20 20v-1.5a3.5 3.5 0 0 0-2.6-3.4M15.5 4.6a3.5 3.5 0 0 1 0 6.8',
  menu: 'M4 6h16M4 12h16M4 18h16',
  lock: 'M7 11V8a5 5 0 0 1 10 0v3M5 11h14v10H5z',
  hash: 'M5 9h14M5 15h14M10 3L8 21M16 3l-2 18',
  file: 'M14 3H6v18h12V7zM14 3v4h4',
  ball: 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM12 7l4 3-1.5 4.5h-5L8 10z',
  swap: 'M7 4L3 8l4 4M3 8h14M17 20l4-4-4-4M21 16H7',
  whistle: 'M12 8a5 5 0 1 0 5 5V8zM17 8h4v3h-4M10 13h.01',
  fit: 'M4 9V4h5M20 9V4h-5M4 15v5h5M20 15v5h-5',
  minus: 'M5 12h14',
  mic: 'M12 3a3 3 0 0 0-3 3v6a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3zM5 11a7 7 0 0 0 14 0M12 18v3',
  phone: 'M5 4h4l2 5-2.5 1.5a11 11 0 0 0 5 5L15 13l5 2v4a2 2 0 0 1-2 2A16 16 0 0 1 3 6a2 2 0 0 1 2-2',
  video: 'M3 7h12v10H3zM15 10l6-3v10l-6-3',
  play: 'M7 4v16l13-8z',
  pause: 'M7 4h3v16H7zM14 4h3v16h-3z',
};

/** A small stroke icon (SVG), decorative. */
export function icon(name, size = 18) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', String(size));
  svg.setAttribute('height', String(size));
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '2');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'icon');
  const p = document.createElementNS(ns, 'path');
  p.setAttribute('d', ICONS[name] || '');
  svg.appendChild(p);
  return svg;
}

/** Replace <i data-icon="name"></i> placeholders of a page with icons. */
export function fillIcons(root = document) {
  for (const el of root.querySelectorAll('i[data-icon]')) el.replaceWith(icon(el.dataset.icon, Number(el.dataset.size) || 18));
}
