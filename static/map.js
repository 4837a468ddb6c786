// /map: live positions of tracked entities (channels loc:<entity> from GET /api/feeds),
// drawn on a canvas with a local equirectangular projection (no tile server).
import { api, h, clear, fillIcons } from './common.js';
import { setupFeedPage, showNotice, lastData, watchFeeds } from './feeds.js';

const TRAIL = 20;
const M_PER_DEG = 111320;
const KIND_COLOR = { car: '#3b5bdb', bus: '#e8590c', bike: '#2b8a3e' };

const entities = new Map(); // channel -> entity
const view = { lat: 0, lon: 0, scale: 0.05, fitted: false, touched: false }; // scale: px per metre
let follow = null;
let near = null; // {lat, lon, radius, results}
let dirty = true;
let canvas;
let ctx;

// ------------------------------------------------------------------ projection

function toScreen(lat, lon) {
  const w = canvas.clientWidth;
  const hgt = canvas.clientHeight;
  const x = (lon - view.lon) * M_PER_DEG * Math.cos((view.lat * Math.PI) / 180) * view.scale;
  const y = (lat - view.lat) * M_PER_DEG * view.scale;
  return [w / 2 + x, hgt / 2 - y];
}

function toGeo(x, y) {
  const w = canvas.clientWidth;
  const hgt = canvas.clientHeight;
  const lat = view.lat + (hgt / 2 - y) / view.scale / M_PER_DEG;
  const lon = view.lon + (x - w / 2) / view.scale / M_PER_DEG / Math.cos((view.lat * Math.PI) / 180);
  return [lat, lon];
}

function distanceM(a, b) {
  const R = 6371008.8;
  const toRad = (d) => (d * Math.PI) / 180;
  const dLat = toRad(b.lat - a.lat);
  const dLon = toRad(b.lon - a.lon);
  const s = Math.sin(dLat / 2) ** 2 + Math.cos(toRad(a.lat)) * Math.cos(toRad(b.lat)) * Math.sin(dLon / 2) ** 2;
  return 2 * R * Math.asin(Math.sqrt(s));
}

function fitAll() {
  const pts = [...entities.values()].filter((e) => typeof e.lat === 'number');
  if (!pts.length) return;
  let minLat = Infinity; let maxLat = -Infinity; let minLon = Infinity; let maxLon = -Infinity;
  for (const e of pts) {
    for (const p of [e, ...e.trail]) {
      minLat = Math.min(minLat, p.lat); maxLat = Math.max(maxLat, p.lat);
      minLon = Math.min(minLon, p.lon); maxLon = Math.max(maxLon, p.lon);
    }
  }
  view.lat = (minLat + maxLat) / 2;
  view.lon = (minLon + maxLon) / 2;
  const wM = Math.max(200, (maxLon - minLon) * M_PER_DEG * Math.cos((view.lat * Math.PI) / 180));
  const hM = Math.max(200, (maxLat - minLat) * M_PER_DEG);
  view.scale = Math.min((canvas.clientWidth - 160) / wM, (canvas.clientHeight - 120) / hM);
  // done once every known entity has a position
  view.fitted = pts.length === entities.size;
  dirty = true;
}

// ------------------------------------------------------------------ drawing

function niceStep(metres) {
  const p = 10 ** Math.floor(Math.log10(metres));
  for (const m of [1, 2, 5, 10]) if (m * p >= metres) return m * p;
  return 10 * p;
}

function draw() {
  dirty = false;
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const hgt = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hgt * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(hgt * dpr);
  }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const css = getComputedStyle(document.documentElement);
  const col = (v) => css.getPropertyValue(v).trim();
  ctx.fillStyle = col('--panel-2');
  ctx.fillRect(0, 0, w, hgt);

  // grid
  const step = niceStep(100 / view.scale);
  ctx.strokeStyle = col('--border');
  ctx.lineWidth = 1;
  const [lat0, lon0] = toGeo(0, hgt);
  const [lat1, lon1] = toGeo(w, 0);
  const stepLat = step / M_PER_DEG;
  const stepLon = step / M_PER_DEG / Math.cos((view.lat * Math.PI) / 180);
  ctx.beginPath();
  for (let la = Math.floor(lat0 / stepLat) * stepLat; la <= lat1; la += stepLat) {
    const [, y] = toScreen(la, view.lon);
    ctx.moveTo(0, Math.round(y) + 0.5); ctx.lineTo(w, Math.round(y) + 0.5);
  }
  for (let lo = Math.floor(lon0 / stepLon) * stepLon; lo <= lon1; lo += stepLon) {
    const [x] = toScreen(view.lat, lo);
    ctx.moveTo(Math.round(x) + 0.5, 0); ctx.lineTo(Math.round(x) + 0.5, hgt);
  }
  ctx.stroke();

  // near circle
  if (near) {
    const [x, y] = toScreen(near.lat, near.lon);
    ctx.beginPath();
    ctx.arc(x, y, near.radius * view.scale, 0, Math.PI * 2);
    ctx.fillStyle = 'rgba(124,149,255,.12)';
    ctx.strokeStyle = col('--accent');
    ctx.setLineDash([6, 4]);
    ctx.fill(); ctx.stroke();
    ctx.setLineDash([]);
  }

  // trails
  for (const e of entities.values()) {
    if (e.trail.length < 2) continue;
    const color = KIND_COLOR[e.kind] || '#868e96';
    for (let i = 1; i < e.trail.length; i++) {
      const [x0, y0] = toScreen(e.trail[i - 1].lat, e.trail[i - 1].lon);
      const [x1, y1] = toScreen(e.trail[i].lat, e.trail[i].lon);
      ctx.globalAlpha = 0.15 + (0.6 * i) / e.trail.length;
      ctx.strokeStyle = color;
      ctx.lineWidth = 3;
      ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
    }
    ctx.globalAlpha = 1;
  }

  // entities
  ctx.font = '12px system-ui, sans-serif';
  ctx.textBaseline = 'middle';
  for (const e of entities.values()) {
    if (typeof e.lat !== 'number') continue;
    const [x, y] = toScreen(e.lat, e.lon);
    e.sx = x; e.sy = y;
    const color = KIND_COLOR[e.kind] || '#868e96';
    const isNear = near && near.results.some((r) => r.channel === e.channel);
    if (e.channel === follow || isNear) {
      ctx.beginPath(); ctx.arc(x, y, e.channel === follow ? 16 : 13, 0, Math.PI * 2);
      ctx.strokeStyle = e.channel === follow ? col('--accent') : col('--warn');
      ctx.lineWidth = e.channel === follow ? 3 : 1.5; ctx.stroke();
    }
    ctx.save();
    ctx.translate(x, y);
    ctx.rotate(((e.heading || 0) * Math.PI) / 180);
    ctx.beginPath();
    ctx.moveTo(0, -11); ctx.lineTo(8, 8); ctx.lineTo(0, 4); ctx.lineTo(-8, 8); ctx.closePath();
    ctx.fillStyle = color; ctx.fill();
    ctx.strokeStyle = '#fff'; ctx.lineWidth = 1.5; ctx.stroke();
    ctx.restore();
    if (view.scale < 0.12 && e.channel !== follow) continue;
    const label = e.name || e.id;
    const tw = ctx.measureText(label).width;
    ctx.fillStyle = col('--panel');
    ctx.globalAlpha = 0.85;
    ctx.fillRect(x + 13, y - 9, tw + 8, 18);
    ctx.globalAlpha = 1;
    ctx.fillStyle = col('--text');
    ctx.fillText(label, x + 17, y);
  }

  // scale bar
  const barM = niceStep(120 / view.scale);
  const barPx = barM * view.scale;
  ctx.fillStyle = col('--text');
  ctx.fillRect(12, hgt - 18, barPx, 3);
  ctx.fillText(barM >= 1000 ? `${barM / 1000} km` : `${barM} m`, 12, hgt - 28);
  if (!entities.size || ![...entities.values()].some((e) => typeof e.lat === 'number')) {
    ctx.fillStyle = col('--muted');
    ctx.textAlign = 'center';
    ctx.fillText('Waiting for positions…', w / 2, hgt / 2);
    ctx.textAlign = 'start';
  }
}

function loop() {
  if (dirty) draw();
  requestAnimationFrame(loop);
}

// ------------------------------------------------------------------ data

function entityFor(channel) {
  let e = entities.get(channel);
  if (!e) {
    e = { channel, id: channel.slice(4), name: channel.slice(4), kind: '', trail: [] };
    entities.set(channel, e);
  }
  return e;
}

function update(channel, msg) {
  const d = msg && msg.data;
  if (!d || typeof d.lat !== 'number' || typeof d.lon !== 'number') return;
  const e = entityFor(channel);
  Object.assign(e, {
    lat: d.lat, lon: d.lon, heading: d.heading, speed: d.speed, kind: d.kind || e.kind,
    name: d.name || e.name, ts: msg.ts || Date.now(),
  });
  const last = e.trail[e.trail.length - 1];
  if (!last || last.lat !== d.lat || last.lon !== d.lon) e.trail.push({ lat: d.lat, lon: d.lon });
  if (e.trail.length > TRAIL) e.trail.shift();
  if (!view.touched && !follow) {
    // until the user moves the map, keep everybody in view
    const [x, y] = toScreen(e.lat, e.lon);
    const m = 24;
    if (!view.fitted || x < m || y < m || x > canvas.clientWidth - m || y > canvas.clientHeight - m) fitAll();
  }
  if (follow === channel) { view.lat = e.lat; view.lon = e.lon; renderDetails(); }
  dirty = true;
  scheduleList();
}

let listTimer = null;
function scheduleList() {
  if (listTimer) return;
  listTimer = setTimeout(() => { listTimer = null; renderList(); }, 300);
}

function renderList() {
  const ul = document.getElementById('entities');
  const list = [...entities.values()].sort((a, b) => String(a.name).localeCompare(String(b.name)));
  document.getElementById('entity-count').textContent = `(${list.length})`;
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.channel : null;
  clear(ul).append(...list.map((e) => h('li', null, h('button', {
    type: 'button', 'aria-pressed': String(e.channel === follow), dataset: { channel: e.channel },
    onclick: () => setFollow(e.channel === follow ? null : e.channel),
  }, h('span', { class: 'kind-dot', style: { background: KIND_COLOR[e.kind] || '#868e96' } }),
  h('span', null, e.name), h('span', { class: 'spacer' }),
  h('span', { class: 'muted small' }, typeof e.speed === 'number' ? `${Math.round(e.speed * 3.6)} km/h` : '')))));
  if (focused) { const b = ul.querySelector(`button[data-channel="${CSS.escape(focused)}"]`); if (b) b.focus(); }
}

function compass(deg) {
  if (typeof deg !== 'number') return '';
  return ['N', 'NE', 'E', 'SE', 'S', 'SW', 'W', 'NW'][Math.round((((deg % 360) + 360) % 360) / 45) % 8];
}

function renderDetails() {
  const box = document.getElementById('details');
  const e = follow && entities.get(follow);
  if (!e) {
    box.className = 'muted small';
    clear(box).append('Click an entity on the map or in the list to follow it.');
    return;
  }
  box.className = '';
  const row = (k, v) => [h('dt', null, k), h('dd', null, v)];
  clear(box).append(
    h('div', { style: { display: 'flex', alignItems: 'center', gap: '8px', marginBottom: '6px' } },
      h('span', { class: 'kind-dot', style: { background: KIND_COLOR[e.kind] || '#868e96' } }), h('strong', { id: 'follow-name' }, e.name), h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'btn btn-ghost small', onclick: () => setFollow(null) }, 'Stop')),
    h('dl', { class: 'details' },
      row('Kind', e.kind || '–'),
      row('Speed', typeof e.speed === 'number' ? `${(e.speed * 3.6).toFixed(1)} km/h` : '–'),
      row('Heading', typeof e.heading === 'number' ? `${Math.round(e.heading)}° ${compass(e.heading)}` : '–'),
      row('Position', typeof e.lat === 'number' ? `${e.lat.toFixed(5)}, ${e.lon.toFixed(5)}` : 'unknown yet'),
      row('Updated', e.ts ? new Date(e.ts).toLocaleTimeString() : '–'),
      row('Channel', e.channel)));
}

function setFollow(channel) {
  follow = channel;
  const e = channel && entities.get(channel);
  if (e && typeof e.lat === 'number') { view.lat = e.lat; view.lon = e.lon; view.touched = true; }
  renderDetails();
  renderList();
  dirty = true;
}

// ------------------------------------------------------------------ nearby

async function nearby(lat, lon, radius) {
  const ul = document.getElementById('near-results');
  clear(ul).append(h('li', { class: 'muted small' }, 'Searching…'));
  try {
    const r = await api('GET', `/api/locations/nearby?lat=${encodeURIComponent(lat)}&lon=${encodeURIComponent(lon)}&radius_m=${encodeURIComponent(radius)}`);
    const results = (r.entities || []).map((x) => ({ ...x, dist: distanceM({ lat, lon }, x) })).sort((a, b) => a.dist - b.dist);
    near = { lat, lon, radius, results };
    clear(ul);
    if (!results.length) ul.append(h('li', { class: 'muted small' }, `Nobody within ${radius} m.`));
    for (const x of results) {
      const e = entities.get(x.channel);
      ul.append(h('li', null, h('button', { type: 'button', onclick: () => setFollow(x.channel), dataset: { channel: x.channel } },
        h('span', { class: 'kind-dot', style: { background: KIND_COLOR[e && e.kind] || '#868e96' } }),
        h('span', null, e ? e.name : x.channel), h('span', { class: 'spacer' }),
        h('span', { class: 'muted small' }, `${Math.round(x.dist)} m`))));
    }
  } catch (ex) {
    near = null;
    clear(ul).append(h('li', { class: 'error-text' }, ex.status === 401 ? 'Log in to search.' : ex.message));
  }
  dirty = true;
}

function fillNearForm(lat, lon) {
  document.getElementById('near-lat').value = lat.toFixed(5);
  document.getElementById('near-lon').value = lon.toFixed(5);
}

// ------------------------------------------------------------------ input

function zoom(factor, cx, cy) {
  const x = cx ?? canvas.clientWidth / 2;
  const y = cy ?? canvas.clientHeight / 2;
  const [lat, lon] = toGeo(x, y);
  view.scale = Math.min(50, Math.max(0.0005, view.scale * factor));
  if (!follow) {
    const [lat2, lon2] = toGeo(x, y);
    view.lat += lat - lat2;
    view.lon += lon - lon2;
  }
  view.touched = true;
  dirty = true;
}

function pan(dx, dy) {
  if (follow) setFollow(null);
  view.lat += dy / view.scale / M_PER_DEG;
  view.lon -= dx / view.scale / M_PER_DEG / Math.cos((view.lat * Math.PI) / 180);
  view.touched = true;
  dirty = true;
}

function pick(x, y) {
  let best = null;
  let bestD = 18;
  for (const e of entities.values()) {
    if (e.sx === undefined) continue;
    const d = Math.hypot(e.sx - x, e.sy - y);
    if (d < bestD) { bestD = d; best = e; }
  }
  return best;
}

function wireInput() {
  let drag = null;
  canvas.addEventListener('pointerdown', (e) => {
    canvas.setPointerCapture(e.pointerId);
    drag = { x: e.clientX, y: e.clientY, moved: false };
  });
  canvas.addEventListener('pointermove', (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x;
    const dy = e.clientY - drag.y;
    if (!drag.moved && Math.hypot(dx, dy) < 4) return;
    drag.moved = true;
    pan(dx, dy);
    drag.x = e.clientX; drag.y = e.clientY;
  });
  canvas.addEventListener('pointerup', (e) => {
    const wasDrag = drag && drag.moved;
    drag = null;
    if (wasDrag) return;
    const r = canvas.getBoundingClientRect();
    const x = e.clientX - r.left;
    const y = e.clientY - r.top;
    if (e.shiftKey) {
      const [lat, lon] = toGeo(x, y);
      fillNearForm(lat, lon);
      nearby(lat, lon, Number(document.getElementById('near-radius').value) || 1000);
      return;
    }
    const hit = pick(x, y);
    setFollow(hit ? hit.channel : null);
  });
  canvas.addEventListener('wheel', (e) => {
    e.preventDefault();
    const r = canvas.getBoundingClientRect();
    zoom(e.deltaY < 0 ? 1.2 : 1 / 1.2, e.clientX - r.left, e.clientY - r.top);
  }, { passive: false });
  canvas.addEventListener('keydown', (e) => {
    const k = e.key;
    if (k === 'ArrowLeft') pan(60, 0);
    else if (k === 'ArrowRight') pan(-60, 0);
    else if (k === 'ArrowUp') pan(0, 60);
    else if (k === 'ArrowDown') pan(0, -60);
    else if (k === '+' || k === '=') zoom(1.3);
    else if (k === '-' || k === '_') zoom(1 / 1.3);
    else if (k === 'Escape') setFollow(null);
    else return;
    e.preventDefault();
  });
  document.getElementById('zoom-in').onclick = () => zoom(1.3);
  document.getElementById('zoom-out').onclick = () => zoom(1 / 1.3);
  document.getElementById('fit').onclick = () => { setFollow(null); fitAll(); };
  document.getElementById('near-center').onclick = () => fillNearForm(view.lat, view.lon);
  document.getElementById('near-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const lat = Number(document.getElementById('near-lat').value);
    const lon = Number(document.getElementById('near-lon').value);
    const radius = Number(document.getElementById('near-radius').value);
    if (!isFinite(lat) || !isFinite(lon) || !(radius > 0)) return;
    nearby(lat, lon, radius);
  });
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && follow) setFollow(null); });
  new ResizeObserver(() => { dirty = true; }).observe(canvas);
  window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => { dirty = true; });
}

// ------------------------------------------------------------------ start

async function main() {
  fillIcons();
  canvas = document.getElementById('map');
  ctx = canvas.getContext('2d');
  wireInput();
  requestAnimationFrame(loop);
  const { me, client } = await setupFeedPage();
  client.on('message', (m) => update(m.channel, m));
  client.on('reset', (e) => update(e.channel, lastData(e)));
  const join = (ch) => client.join(ch).then(
    (reply) => update(ch, lastData(reply)),
    (err) => {
      if (['unauthorized', 'forbidden'].includes(err.code) && !me) {
        showNotice(['Live positions need an account. ', h('a', { href: '/' }, 'Log in'), ' and come back.']);
      }
    });
  watchFeeds('loc', (channels) => {
    if (!document.getElementById('notice').textContent.includes('Log in')) showNotice(null);
    for (const ch of channels) { entityFor(ch); join(ch); }
    renderList();
    dirty = true;
  }, {
    onEmpty: () => showNotice('Waiting for tracked entities…'),
    onError: (ex) => { if (!entities.size) showNotice(`Could not load the list of feeds: ${ex.message}`); },
  });
  setTimeout(() => { if (!document.getElementById('near-lat').value) fillNearForm(view.lat, view.lon); }, 3000);
  setInterval(() => { if (follow) renderDetails(); }, 1000);
}

main();
