// The chat page (/): login, rooms, DMs, messages, presence, typing, uploads.
import { ChatClient, dmChannel } from './chat-client.js';
import {
  api, whoami, h, clear, icon, fillIcons, safeUrl, fmtTime, fmtDay, fmtDateTime, fmtSize, bindConnectionPill, toast, avatar, debounce,
} from './common.js';
import { $, S, userName, otherOfDm, channelTitle } from './chat/state.js';
import { showAuth, wireAuth } from './chat/auth.js';

const HISTORY_PAGE = 50;
const TYPING_SHOW_MS = 4000;
const GROUP_MS = 5 * 60 * 1000;

// ------------------------------------------------------------------ names

function loadUserCache() {
  try {
    const o = JSON.parse(localStorage.getItem('chat.users') || '{}');
    for (const [id, name] of Object.entries(o)) S.users.set(id, name);
  } catch (_) { /* ignore */ }
}
const saveUserCache = debounce(() => {
  try { localStorage.setItem('chat.users', JSON.stringify(Object.fromEntries(S.users))); } catch (_) { /* ignore */ }
}, 500);
function learnUser(u) {
  if (!u || u.id === undefined || !u.name) return;
  const id = String(u.id);
  if (S.users.get(id) !== u.name) {
    S.users.set(id, u.name);
    saveUserCache();
    if ([...S.dms.values()].some((d) => d.otherId === id)) renderSidebar();
  }
}
// ------------------------------------------------------------------ start

async function start(me) {
  S.me = { ...me, id: String(me.id) };
  learnUser(S.me);
  $('auth-view').classList.add('hidden');
  $('chat-view').classList.remove('hidden');
  $('userbox').classList.remove('hidden');
  $('conn').classList.remove('hidden');
  $('menu-btn').classList.remove('hidden');
  $('me-name').textContent = me.name;

  const client = new ChatClient();
  S.client = client;
  window.chatClient = client; // handy for debugging and tests
  bindConnectionPill(client, $('conn'));
  client.on('message', onMessage);
  client.on('edit', onEdit);
  client.on('delete', onDelete);
  client.on('typing', onTyping);
  client.on('presence', onPresence);
  client.on('reset', onReset);
  client.on('state', ({ state, reconnected }) => {
    document.body.dataset.conn = state;
    if (state === 'open' && reconnected) refreshChannels();
  });
  client.on('disconnect', (e) => toast(`Disconnected by the server: ${e.reason || e.code}`, 'error'));
  client.on('error', (e) => { if (e.code === 'unauthorized') { toast('Session expired, please log in again', 'error'); showAuth(); } });
  client.connect().catch(() => {});

  refreshChannels();
  await loadRooms();
  const wanted = localStorage.getItem('chat.active');
  const myDm = wanted && wanted.startsWith('dm:') && wanted.slice(3).split(',').includes(S.me.id);
  if (myDm && !S.dms.has(wanted)) S.dms.set(wanted, { channel: wanted, otherId: otherOfDm(wanted) });
  const first = (wanted && (S.rooms.has(wanted) || S.dms.has(wanted)) && wanted)
    || (S.rooms.has('room:lobby') ? 'room:lobby' : [...S.rooms.keys()][0]) || 'room:lobby';
  select(first);
  // new DMs and invitations have no event of their own: look for them regularly
  setInterval(() => { if (document.visibilityState === 'visible') refreshChannels(); }, 5000);
  setInterval(renderTyping, 1000);
}

async function loadRooms(quiet = false) {
  try {
    const r = await api('GET', '/api/rooms');
    const list = Array.isArray(r) ? r : r.rooms || [];
    for (const item of list) {
      const room = typeof item === 'string' ? { name: item } : item;
      const name = String(room.name || room.channel || '').replace(/^room:/, '');
      if (!name) continue;
      S.rooms.set(`room:${name}`, { channel: `room:${name}`, name, private: !!room.private });
    }
  } catch (ex) {
    if (!quiet) toast(`Could not load rooms: ${ex.message}`, 'error');
  }
  if (!S.rooms.has('room:lobby')) S.rooms.set('room:lobby', { channel: 'room:lobby', name: 'lobby', private: false });
  renderSidebar();
}

/** The `channels` op: the user's rooms and DMs with unread counts. Joins new ones. */
let refreshes = 0;
async function refreshChannels() {
  let list;
  if (++refreshes % 4 === 0) loadRooms(true); // rooms created by others, invitations
  try {
    await S.client.ready();
    list = await S.client.channelsList();
  } catch (_) {
    return;
  }
  for (const c of list) {
    const ch = c.channel;
    if (ch.startsWith('dm:')) {
      if (!S.dms.has(ch)) S.dms.set(ch, { channel: ch, otherId: otherOfDm(ch) });
      if (c.last && c.last.from) learnUser(c.last.from);
    } else if (ch.startsWith('room:') && !S.rooms.has(ch)) {
      S.rooms.set(ch, { channel: ch, name: ch.slice(5), private: false });
    }
    if (ch !== S.active && typeof c.unread === 'number') S.unread.set(ch, c.unread);
    // be in every channel of the user so that events (and unread counts) are live
    if (!S.client.channel(ch).wanted) S.client.join(ch).then((reply) => fillView(ch, reply)).catch(() => {});
  }
  renderSidebar();
  const unknown = [...S.dms.values()].some((d) => !S.users.has(d.otherId));
  if (unknown && !refreshChannels.triedNames) {
    refreshChannels.triedNames = true; // DM partners whose name we never saw
    searchUsers('').then(() => renderSidebar(), () => {});
  }
}

// ------------------------------------------------------------------ sidebar

function chanButton(channel, label, sym, extra) {
  const unread = S.unread.get(channel) || 0;
  const btn = h('button', {
    type: 'button', 'aria-current': String(channel === S.active), dataset: { channel },
    onclick: () => select(channel),
  }, extra || h('span', { class: 'chan-icon', 'aria-hidden': 'true' }, icon(sym, 15)),
  h('span', { class: 'chan-name' }, label),
  unread > 0 ? h('span', { class: 'badge', 'aria-label': `${unread} unread` }, unread > 99 ? '99+' : String(unread)) : null);
  return h('li', { class: unread > 0 ? 'unread' : '' }, btn);
}

function renderSidebar() {
  // keep the keyboard focus on the same channel button across re-renders
  const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest('#sidebar button[data-channel]');
  const refocus = focused ? focused.dataset.channel : null;
  const rooms = [...S.rooms.values()].sort((a, b) => a.name.localeCompare(b.name));
  clear($('room-list')).append(...rooms.map((r) => chanButton(r.channel, r.name, r.private ? 'lock' : 'hash')));
  const dms = [...S.dms.values()].sort((a, b) => userName(a.otherId).localeCompare(userName(b.otherId)));
  clear($('dm-list')).append(...dms.map((d) => {
    const online = S.client && S.client.channel(d.channel).members.has(d.otherId);
    return chanButton(d.channel, userName(d.otherId), '', h('span', { class: `dot${online ? ' on' : ''}`, title: online ? 'online' : 'offline' }));
  }));
  if (refocus) {
    const b = $('sidebar').querySelector(`button[data-channel="${CSS.escape(refocus)}"]`);
    if (b) b.focus();
  }
  let total = 0;
  for (const [ch, n] of S.unread) if (ch !== S.active) total += n;
  document.title = (total ? `(${total}) ` : '') + (S.active ? `${channelTitle(S.active)} – Chat` : 'Chat');
}

function toggleSidebar(open) {
  const sb = $('sidebar');
  const isOpen = open ?? !sb.classList.contains('open');
  sb.classList.toggle('open', isOpen);
  $('menu-btn').setAttribute('aria-expanded', String(isOpen));
}

// ------------------------------------------------------------------ channel views

function getView(channel) {
  let v = S.views.get(channel);
  if (!v) {
    v = {
      channel,
      el: h('div', { class: 'msg-list', dataset: { channel } }),
      top: h('div', { class: 'history-top' }),
      rows: new Map(), // seq -> row
      pending: new Map(), // client_id -> row
      oldest: Infinity,
      newest: 0,
      reachedStart: false,
      loading: false,
      filled: false,
      readSent: 0,
    };
    v.el.appendChild(v.top);
    S.views.set(channel, v);
  }
  return v;
}

function fillView(channel, reply) {
  const v = getView(channel);
  // rows already shown may have been edited or deleted since this reply: keep them
  for (const m of reply.messages || []) if (!v.rows.has(m.seq)) addMessage(v, m);
  if (!v.filled) {
    v.filled = true;
    if ((reply.messages || []).length < HISTORY_PAGE || v.oldest <= 1) setReachedStart(v);
    else v.top.textContent = '';
  }
  if (channel === S.active) { scrollToBottom(); renderMembers(); markRead(); }
}

function setReachedStart(v) {
  v.reachedStart = true;
  v.top.textContent = `This is the beginning of ${channelTitle(v.channel)}.`;
}

async function select(channel) {
  S.active = channel;
  localStorage.setItem('chat.active', channel);
  S.unread.set(channel, 0);
  const v = getView(channel);
  const box = $('messages');
  clear(box).appendChild(v.el);
  $('jump-btn').classList.add('hidden');
  $('chan-title').textContent = channelTitle(channel);
  const room = S.rooms.get(channel);
  $('chan-sub').textContent = channel.startsWith('dm:') ? 'Direct message' : room && room.private ? 'Private room' : 'Public room';
  $('invite-btn').classList.toggle('hidden', !(room && room.private));
  $('composer-input').disabled = false;
  $('send-btn').disabled = false;
  $('composer-input').placeholder = `Message ${channelTitle(channel)}`;
  toggleSidebar(false);
  renderSidebar();
  renderMembers();
  renderTyping();
  scrollToBottom();
  if (window.matchMedia('(pointer: fine)').matches) $('composer-input').focus();
  if (!v.filled) v.top.textContent = 'Loading…';
  try {
    const reply = await S.client.join(channel);
    fillView(channel, reply);
  } catch (ex) {
    if (S.active === channel) v.top.textContent = `Cannot open ${channelTitle(channel)}: ${ex.message}`;
  }
}

// ------------------------------------------------------------------ messages

function isAtBottom() {
  const box = $('messages');
  return box.scrollHeight - box.scrollTop - box.clientHeight < 60;
}
function scrollToBottom() {
  const box = $('messages');
  box.scrollTop = box.scrollHeight;
}

function linkify(text) {
  const out = [];
  const re = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;
  let last = 0;
  let m;
  while ((m = re.exec(text))) {
    if (m.index > last) out.push(text.slice(last, m.index));
    out.push(h('a', { href: m[0], target: '_blank', rel: 'noopener noreferrer nofollow' }, m[0]));
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

function renderContent(m) {
  const d = m.data || {};
  if (m.deleted) return h('p', { class: 'msg-text' }, 'This message was deleted.');
  const url = safeUrl(d.url);
  switch (d.type) {
    case 'text':
      return h('p', { class: 'msg-text' }, linkify(String(d.text ?? '')));
    case 'image':
      if (!url) break;
      return h('img', {
        class: 'msg-image', src: url, alt: String(d.name || 'image'), loading: 'lazy', tabindex: '0',
        onload: (e) => { const box = $('messages'); if (box.scrollHeight - box.scrollTop - box.clientHeight < e.target.clientHeight + 80) scrollToBottom(); },
        onclick: () => openLightbox(url, d.name), onkeydown: (e) => { if (e.key === 'Enter') openLightbox(url, d.name); },
      });
    case 'audio':
    case 'video':
      if (!url) break;
      return h('div', null, h(d.type, { class: 'msg-media', src: url, controls: true, preload: 'metadata' }),
        h('div', { class: 'small muted' }, String(d.name || '')));
    case 'file':
      if (!url) break;
      return h('a', { class: 'msg-file', href: url, download: String(d.name || ''), target: '_blank', rel: 'noopener' },
        icon('file', 22),
        h('span', { class: 'fname' }, String(d.name || 'file')),
        h('span', { class: 'small muted' }, fmtSize(d.size)));
    default:
      break;
  }
  return h('p', { class: 'msg-text muted' }, typeof d.text === 'string' ? d.text : JSON.stringify(d));
}

function buildRow(v, m) {
  const mine = m.from && String(m.from.id) === S.me.id;
  const body = h('div', { class: 'msg-body' });
  const content = renderContent(m);
  body.append(content);
  if (m.edited_ts && !m.deleted) {
    (content.tagName === 'P' ? content : body).append(h('span', { class: 'msg-edited', title: `edited ${fmtDateTime(m.edited_ts)}` }, '(edited)'));
  }
  const actions = h('div', { class: 'msg-actions' });
  if (mine && !m.deleted && m.seq) {
    if (m.data && m.data.type === 'text') actions.append(h('button', { type: 'button', onclick: () => startEdit(v, row) }, 'Edit'));
    actions.append(h('button', { type: 'button', class: 'btn-danger', onclick: (e) => deleteMsg(v, row, e.currentTarget) }, 'Delete'));
  }
  const msg = h('div', { class: 'msg' + (m.deleted ? ' deleted' : '') },
    avatar(m.from),
    h('div', { class: 'msg-head' },
      h('span', { class: 'msg-author' }, (m.from && m.from.name) || '?'),
      h('time', { class: 'msg-time', datetime: new Date(m.ts || Date.now()).toISOString(), title: fmtDateTime(m.ts) }, fmtTime(m.ts || Date.now()))),
    body, actions.childElementCount ? actions : null);
  const row = h('div', { class: 'msg-row', dataset: { seq: m.seq || '', from: (m.from && m.from.id) || '' } },
    h('div', { class: 'day-sep hidden' }, fmtDay(m.ts || Date.now())), msg);
  row._m = m;
  return row;
}

/** Insert or update a message (deduplicated by seq and client_id). */
function addMessage(v, m, { pending = false } = {}) {
  if (m.from) learnUser(m.from);
  const old = (m.seq && v.rows.get(m.seq)) || (m.client_id && v.pending.get(m.client_id)) || null;
  if (old && !m.seq && old._m.seq) return old; // already acknowledged
  const fresh = buildRow(v, m);
  if (pending) fresh.classList.add('pending');
  if (m.client_id) {
    if (pending) v.pending.set(m.client_id, fresh); else v.pending.delete(m.client_id);
  }
  if (m.seq) {
    v.rows.set(m.seq, fresh);
    v.oldest = Math.min(v.oldest, m.seq);
    v.newest = Math.max(v.newest, m.seq);
  }
  if (old && !(m.seq && !old._m.seq)) {
    old.replaceWith(fresh);
  } else {
    if (old) old.remove(); // a pending row got its seq: move it into seq order
    placeRow(v, fresh, m.seq);
  }
  regroup(fresh);
  regroup(fresh.nextElementSibling);
  return fresh;
}

/** Rows: [top marker] rows with seq (ascending) … pending rows (no seq yet). */
function placeRow(v, row, seq) {
  if (!seq) { v.el.appendChild(row); return; }
  let el = v.el.lastElementChild;
  while (el && el !== v.top) {
    const s = Number(el.dataset.seq || 0);
    if (s && s < seq) break;
    el = el.previousElementSibling;
  }
  (el || v.top).after(row);
}

function regroup(row) {
  if (!row || !row.classList.contains('msg-row')) return;
  const prev = row.previousElementSibling && row.previousElementSibling.classList.contains('msg-row') ? row.previousElementSibling : null;
  const m = row._m;
  const p = prev && prev._m;
  const ts = m.ts || Date.now();
  const newDay = !p || new Date(p.ts || Date.now()).toDateString() !== new Date(ts).toDateString();
  row.querySelector('.day-sep').classList.toggle('hidden', !newDay);
  const cont = !newDay && p && p.from && m.from && String(p.from.id) === String(m.from.id) && ts - (p.ts || 0) < GROUP_MS && !p.deleted;
  row.querySelector('.msg').classList.toggle('cont', !!cont);
}

function onMessage(m) {
  const v = getView(m.channel);
  const wasBottom = isAtBottom();
  addMessage(v, m);
  const mine = m.from && String(m.from.id) === S.me.id;
  const t = S.typing.get(m.channel);
  if (t && m.from) t.delete(String(m.from.id));
  if (m.channel === S.active) {
    renderTyping();
    if (wasBottom || mine) scrollToBottom();
    else $('jump-btn').classList.remove('hidden');
    markRead();
  } else if (!mine) {
    S.unread.set(m.channel, (S.unread.get(m.channel) || 0) + 1);
    if (m.channel.startsWith('dm:') && !S.dms.has(m.channel)) S.dms.set(m.channel, { channel: m.channel, otherId: otherOfDm(m.channel) });
    renderSidebar();
  }
}

function onReset(e) {
  const old = S.views.get(e.channel);
  if (old) {
    // keep messages still being sent
    const pending = [...old.pending.values()];
    S.views.delete(e.channel);
    const v = getView(e.channel);
    fillView(e.channel, { messages: e.messages });
    for (const row of pending) { v.el.appendChild(row); v.pending.set(row._m.client_id, row); }
    if (S.active === e.channel) { clear($('messages')).appendChild(v.el); scrollToBottom(); }
  }
}

function onEdit(e) {
  const v = S.views.get(e.channel);
  const row = v && v.rows.get(e.seq);
  if (!row) return;
  addMessage(v, { ...row._m, data: e.data, edited_ts: e.edited_ts || Date.now() });
}

function onDelete(e) {
  const v = S.views.get(e.channel);
  const row = v && v.rows.get(e.seq);
  if (!row) return;
  addMessage(v, { ...row._m, data: {}, deleted: true });
}

function markRead() {
  if (!S.active || document.visibilityState !== 'visible') return;
  const v = getView(S.active);
  if (v.newest > v.readSent && isAtBottom()) {
    v.readSent = v.newest;
    S.client.read(S.active, v.newest).catch(() => { v.readSent = 0; });
  }
  if (S.unread.get(S.active)) { S.unread.set(S.active, 0); renderSidebar(); }
}

async function loadOlder() {
  const v = S.active && getView(S.active);
  if (!v || v.loading || v.reachedStart || !v.filled || !isFinite(v.oldest)) return;
  v.loading = true;
  v.top.textContent = 'Loading older messages…';
  const box = $('messages');
  try {
    const { messages } = await S.client.history(v.channel, { before: v.oldest, limit: HISTORY_PAGE });
    const before = box.scrollHeight;
    for (const m of messages) addMessage(v, m);
    if (v === getView(S.active)) box.scrollTop += box.scrollHeight - before;
    if (messages.length < HISTORY_PAGE || v.oldest <= 1) setReachedStart(v);
    else v.top.textContent = '';
  } catch (ex) {
    v.top.textContent = `Could not load older messages: ${ex.message}`;
  } finally {
    v.loading = false;
  }
}

// ------------------------------------------------------------------ sending

function send(text) {
  const channel = S.active;
  if (!channel) return;
  const data = { type: 'text', text };
  publish(channel, data);
}

function publish(channel, data) {
  const v = getView(channel);
  const p = S.client.publish(channel, data);
  const clientId = p.clientId;
  addMessage(v, { channel, from: { id: S.me.id, name: S.me.name }, ts: Date.now(), data, client_id: clientId }, { pending: true });
  scrollToBottom();
  p.then((ok) => {
    const row = v.pending.get(clientId);
    if (row) addMessage(v, { ...row._m, seq: ok.seq, ts: ok.ts || row._m.ts });
    if (channel === S.active) markRead();
  }, (err) => {
    const row = v.pending.get(clientId);
    if (!row) return;
    row.classList.remove('pending');
    row.classList.add('failed');
    v.pending.delete(clientId);
    row.querySelector('.msg-body').append(h('div', { class: 'msg-status' }, `Not sent (${err.message}). `,
      h('button', { type: 'button', class: 'btn btn-ghost small', onclick: () => { row.remove(); publish(channel, data); } }, 'Retry')));
  });
}

function startEdit(v, row) {
  const m = row._m;
  const body = row.querySelector('.msg-body');
  const ta = h('textarea', { class: 'input', rows: 2, 'aria-label': 'Edit message' });
  ta.value = m.data.text || '';
  const done = () => addMessage(v, row._m);
  const save = async () => {
    const text = ta.value.trim();
    if (!text) return;
    if (text === m.data.text) { done(); return; }
    try {
      await S.client.edit(v.channel, m.seq, { ...m.data, text });
      addMessage(v, { ...m, data: { ...m.data, text }, edited_ts: Date.now() });
    } catch (ex) { toast(`Edit failed: ${ex.message}`, 'error'); }
    $('composer-input').focus();
  };
  ta.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); save(); }
    if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); done(); $('composer-input').focus(); }
  });
  clear(body).append(h('div', { class: 'edit-box' }, ta,
    h('div', { class: 'small muted' }, 'Enter to save · Esc to cancel ',
      h('button', { type: 'button', class: 'btn btn-ghost small', onclick: save }, 'Save'),
      h('button', { type: 'button', class: 'btn btn-ghost small', onclick: done }, 'Cancel'))));
  ta.focus();
  ta.setSelectionRange(ta.value.length, ta.value.length);
}

async function deleteMsg(v, row, btn) {
  // two clicks (or Enter twice): the first one asks
  if (!btn.dataset.armed) {
    btn.dataset.armed = '1';
    btn.textContent = 'Delete for everyone?';
    setTimeout(() => { if (btn.isConnected) { delete btn.dataset.armed; btn.textContent = 'Delete'; } }, 4000);
    return;
  }
  try {
    await S.client.deleteMessage(v.channel, row._m.seq);
    addMessage(v, { ...row._m, data: {}, deleted: true });
  } catch (ex) { toast(`Delete failed: ${ex.message}`, 'error'); }
}

function editLastOwn() {
  const v = S.active && getView(S.active);
  if (!v) return false;
  const rows = [...v.rows.values()].filter((r) => r._m.from && String(r._m.from.id) === S.me.id && !r._m.deleted && r._m.data && r._m.data.type === 'text');
  const last = rows.sort((a, b) => b._m.seq - a._m.seq)[0];
  if (!last) return false;
  startEdit(v, last);
  last.scrollIntoView({ block: 'nearest' });
  return true;
}

async function uploadFiles(files) {
  const channel = S.active;
  if (!channel) return;
  for (const file of files) {
    const note = toastProgress(`Uploading ${file.name}…`);
    try {
      const form = new FormData();
      form.append('file', file, file.name);
      const r = await api('POST', '/api/uploads', null, { form });
      const mime = r.mime || file.type || 'application/octet-stream';
      let type = 'file';
      if (mime.startsWith('image/')) type = 'image';
      else if (mime.startsWith('audio/')) type = 'audio';
      else if (mime.startsWith('video/')) type = 'video';
      publish(channel, { type, url: r.url, name: r.name || file.name, size: r.size ?? file.size, mime });
    } catch (ex) {
      toast(`Upload of ${file.name} failed: ${ex.status === 413 ? 'file too large' : ex.message}`, 'error', 6000);
    } finally {
      note.remove();
    }
  }
}

function toastProgress(text) {
  toast(text, 'info', 600000);
  const box = document.getElementById('toasts');
  return box.lastElementChild;
}

function openLightbox(url, name) {
  const dlg = $('lightbox');
  clear(dlg).append(h('img', { src: url, alt: String(name || 'image'), onclick: () => dlg.close() }));
  dlg.showModal();
}

// ------------------------------------------------------------------ typing and presence

function onTyping(e) {
  if (!e.user || String(e.user.id) === S.me.id) return;
  learnUser(e.user);
  if (!S.typing.has(e.channel)) S.typing.set(e.channel, new Map());
  S.typing.get(e.channel).set(String(e.user.id), { name: e.user.name, until: Date.now() + TYPING_SHOW_MS });
  if (e.channel === S.active) renderTyping();
}

function renderTyping() {
  const el = $('typing');
  const t = S.active && S.typing.get(S.active);
  const now = Date.now();
  const names = [];
  if (t) for (const [id, x] of t) { if (x.until > now) names.push(x.name); else t.delete(id); }
  let text = '';
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = 'Several people are typing…';
  if (el.textContent !== text) el.textContent = text;
}

function onPresence(e) {
  for (const m of e.joined || []) learnUser(m);
  if (e.channel === S.active) renderMembers();
  if (e.channel.startsWith('dm:')) renderSidebar();
}

function renderMembers() {
  const list = $('member-list');
  const members = S.active ? S.client.channel(S.active).memberList() : [];
  members.sort((a, b) => String(a.name).localeCompare(String(b.name)));
  $('member-count').textContent = String(members.length);
  clear(list).append(...members.map((m) => h('div', { class: 'member' },
    avatar(m, 'sm'), h('span', { class: 'name' }, m.name || userName(m.id)),
    String(m.id) === S.me.id ? h('span', { class: 'muted small' }, '(you)') : null,
    h('span', { class: 'spacer' }), h('span', { class: 'dot on', title: 'online' }))));
  if (!members.length) list.append(h('div', { class: 'muted small' }, 'Nobody online.'));
}

// ------------------------------------------------------------------ people search, rooms, invites

async function searchUsers(q) {
  const r = await api('GET', `/api/users?q=${encodeURIComponent(q)}`);
  const list = Array.isArray(r) ? r : r.users || [];
  for (const u of list) learnUser(u);
  return list;
}

const onUserSearch = debounce(async () => {
  const q = $('user-search').value.trim();
  const box = $('user-results');
  if (!q) { clear(box); return; }
  try {
    const users = (await searchUsers(q)).filter((u) => String(u.id) !== S.me.id);
    clear(box).append(...users.map((u) => h('li', null, h('button', { type: 'button', onclick: () => openDm(u) }, avatar(u, 'sm'), h('span', null, u.name)))));
    if (!users.length) box.append(h('li', { class: 'muted small' }, 'Nobody found.'));
  } catch (ex) {
    clear(box).append(h('li', { class: 'error-text' }, ex.message));
  }
}, 250);

function openDm(user) {
  learnUser(user);
  const ch = dmChannel(S.me.id, user.id);
  if (!S.dms.has(ch)) S.dms.set(ch, { channel: ch, otherId: String(user.id) });
  $('user-search').value = '';
  clear($('user-results'));
  select(ch);
}

async function createRoom(e) {
  e.preventDefault();
  const name = $('room-name').value.trim().toLowerCase();
  const priv = $('room-private').checked;
  const err = $('room-error');
  if (!/^[a-z0-9_-]{1,64}$/.test(name)) { err.textContent = 'Use 1–64 letters, digits, _ or -'; return; }
  try {
    await api('POST', '/api/rooms', { name, private: priv });
    S.rooms.set(`room:${name}`, { channel: `room:${name}`, name, private: priv });
    $('room-dialog').close();
    select(`room:${name}`);
  } catch (ex) {
    err.textContent = ex.message;
  }
}

async function invite(e) {
  e.preventDefault();
  const room = S.rooms.get(S.active);
  const who = $('invite-name').value.trim();
  const err = $('invite-error');
  if (!room || !who) return;
  try {
    const found = (await searchUsers(who)).find((u) => u.name.toLowerCase() === who.toLowerCase());
    if (!found) { err.textContent = `No user named ${who}`; return; }
    await api('POST', `/api/rooms/${encodeURIComponent(room.name)}/members`, { user: String(found.id) });
    $('invite-dialog').close();
    toast(`${found.name} can now join #${room.name}`);
  } catch (ex) {
    err.textContent = ex.message;
  }
}

// ------------------------------------------------------------------ wiring

function autosize(ta) {
  ta.style.height = 'auto';
  ta.style.height = Math.min(ta.scrollHeight, 160) + 'px';
}

function wire() {
  wireAuth(start);
  $('menu-btn').onclick = () => toggleSidebar();
  $('members-btn').onclick = () => {
    const m = $('members');
    if (window.matchMedia('(max-width: 980px)').matches) {
      m.classList.toggle('open');
      $('members-btn').setAttribute('aria-expanded', String(m.classList.contains('open')));
    } else {
      m.classList.toggle('hidden');
      $('chat-view').style.gridTemplateColumns = m.classList.contains('hidden') ? '270px 1fr' : '';
    }
  };
  $('new-room-btn').onclick = () => { $('room-error').textContent = ''; $('room-form').reset(); $('room-dialog').showModal(); };
  $('room-cancel').onclick = () => $('room-dialog').close();
  $('room-form').addEventListener('submit', createRoom);
  $('invite-btn').onclick = () => { $('invite-error').textContent = ''; $('invite-form').reset(); $('invite-dialog').showModal(); };
  $('invite-cancel').onclick = () => $('invite-dialog').close();
  $('invite-form').addEventListener('submit', invite);
  $('invite-name').addEventListener('input', debounce(async () => {
    const q = $('invite-name').value.trim();
    if (!q) return;
    try {
      const users = await searchUsers(q);
      clear($('invite-suggestions')).append(...users.map((u) => h('option', { value: u.name })));
    } catch (_) { /* ignore */ }
  }, 250));
  $('user-search').addEventListener('input', onUserSearch);
  $('user-search').addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { $('user-search').value = ''; clear($('user-results')); }
    if (e.key === 'Enter') { e.preventDefault(); const b = $('user-results').querySelector('button'); if (b) b.click(); }
  });

  const input = $('composer-input');
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    send(text);
    input.value = '';
    autosize(input);
    input.focus();
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); $('composer').requestSubmit(); }
    else if (e.key === 'ArrowUp' && !input.value && editLastOwn()) e.preventDefault();
    else if (e.key === 'Escape') { input.blur(); }
  });
  input.addEventListener('input', () => {
    autosize(input);
    if (input.value.trim() && S.active) S.client.typing(S.active);
  });
  input.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files || [])];
    if (files.length) { e.preventDefault(); uploadFiles(files); }
  });
  $('attach-btn').onclick = () => $('file-input').click();
  $('file-input').addEventListener('change', () => {
    const files = [...$('file-input').files];
    $('file-input').value = '';
    uploadFiles(files);
  });
  const main = $('main');
  main.addEventListener('click', () => { if ($('sidebar').classList.contains('open')) toggleSidebar(false); });
  main.addEventListener('dragover', (e) => { if (e.dataTransfer?.types?.includes('Files')) { e.preventDefault(); main.classList.add('drop-hint'); } });
  main.addEventListener('dragleave', (e) => { if (e.target === main) main.classList.remove('drop-hint'); });
  main.addEventListener('drop', (e) => {
    main.classList.remove('drop-hint');
    const files = [...(e.dataTransfer?.files || [])];
    if (files.length) { e.preventDefault(); uploadFiles(files); }
  });
  $('messages').addEventListener('scroll', () => {
    if ($('messages').scrollTop < 120) loadOlder();
    if (isAtBottom()) { markRead(); $('jump-btn').classList.add('hidden'); }
  });
  $('jump-btn').onclick = () => { scrollToBottom(); $('jump-btn').classList.add('hidden'); $('composer-input').focus(); };
  document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'visible' && S.client) { markRead(); refreshChannels(); } });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      toggleSidebar(false);
      $('members').classList.remove('open');
    }
  });
}

async function main() {
  fillIcons();
  wire();
  loadUserCache();
  let me = null;
  try { me = await whoami(); } catch (ex) { toast(`Server not reachable: ${ex.message}`, 'error'); }
  if (me) start(me); else showAuth();
}

main();
