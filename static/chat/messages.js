// The messages of the open channel: one view (list of rows) per channel, opening a
// channel, rendering and grouping messages, live events (new, edited, deleted,
// reset), read marks, scrolling back through history, editing and deleting one's
// own messages, and the image lightbox.
import {
  h, clear, icon, safeUrl, fmtTime, fmtDay, fmtDateTime, fmtSize, toast, avatar,
} from '../common.js';
import { $, S, otherOfDm, channelTitle } from './state.js';
import { learnUser, renderSidebar, toggleSidebar } from './sidebar.js';
import { renderMembers, renderTyping } from './presence.js';
import { renderVoice, renderVideo, renderCall } from './media.js';
import { updateCallButtons } from './calls.js';

const HISTORY_PAGE = 50;
const GROUP_MS = 5 * 60 * 1000;

// ------------------------------------------------------------------ channel views

export function getView(channel) {
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

export function fillView(channel, reply) {
  const v = getView(channel);
  // rows already shown may have been edited or deleted since this reply: keep them
  for (const m of reply.messages || []) if (!v.rows.has(m.seq)) addMessage(v, m);
  if (!v.filled) {
    v.filled = true;
    // a join reply of large messages holds fewer than HISTORY_PAGE without being the
    // start (its byte budget): only seq 1, or nothing at all, is the start
    if (!(reply.messages || []).length || v.oldest <= 1) setReachedStart(v);
    else v.top.textContent = '';
  }
  if (channel === S.active) { scrollToBottom(); renderMembers(); markRead(); fillScreen(); }
}

/** Load older messages while the open channel's list does not fill the screen. */
function fillScreen() {
  const v = S.active && getView(S.active);
  const box = $('messages');
  if (v && !v.reachedStart && box.scrollHeight <= box.clientHeight + 120) loadOlder();
}

function setReachedStart(v) {
  v.reachedStart = true;
  v.top.textContent = `This is the beginning of ${channelTitle(v.channel)}.`;
}

export async function select(channel) {
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
  updateCallButtons();
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
export function scrollToBottom() {
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
    case 'call':
      return renderCall(m);
    case 'audio':
    case 'video':
      if (!url) break;
      if (d.type === 'audio' && d.duration_ms) return renderVoice(d, url);
      if (d.type === 'video' && d.duration_ms) return renderVideo(d, url);
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
export function addMessage(v, m, { pending = false } = {}) {
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

export function onMessage(m) {
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

export function onReset(e) {
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

export function onEdit(e) {
  const v = S.views.get(e.channel);
  const row = v && v.rows.get(e.seq);
  if (!row) return;
  addMessage(v, { ...row._m, data: e.data, edited_ts: e.edited_ts || Date.now() });
}

export function onDelete(e) {
  const v = S.views.get(e.channel);
  const row = v && v.rows.get(e.seq);
  if (!row) return;
  addMessage(v, { ...row._m, data: {}, deleted: true });
}

export function markRead() {
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
    const { messages, more } = await S.client.history(v.channel, { before: v.oldest, limit: HISTORY_PAGE });
    const before = box.scrollHeight;
    for (const m of messages) addMessage(v, m);
    if (v === getView(S.active)) box.scrollTop += box.scrollHeight - before;
    // `more`: the byte budget cut the page short, older messages remain
    if (!messages.length || v.oldest <= 1 || (messages.length < HISTORY_PAGE && !more)) setReachedStart(v);
    else v.top.textContent = '';
  } catch (ex) {
    v.top.textContent = `Could not load older messages: ${ex.message}`;
    return;
  } finally {
    v.loading = false;
  }
  if (v === getView(S.active)) fillScreen();
}

// ------------------------------------------------------------------ editing and deleting

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

export function editLastOwn() {
  const v = S.active && getView(S.active);
  if (!v) return false;
  const rows = [...v.rows.values()].filter((r) => r._m.from && String(r._m.from.id) === S.me.id && !r._m.deleted && r._m.data && r._m.data.type === 'text');
  const last = rows.sort((a, b) => b._m.seq - a._m.seq)[0];
  if (!last) return false;
  startEdit(v, last);
  last.scrollIntoView({ block: 'nearest' });
  return true;
}

// ------------------------------------------------------------------ lightbox and scrolling

function openLightbox(url, name) {
  const dlg = $('lightbox');
  clear(dlg).append(h('img', { src: url, alt: String(name || 'image'), onclick: () => dlg.close() }));
  dlg.showModal();
}

/** Wire the scrolling of the message list (history, read marks) and the jump button. */
export function wireMessages() {
  $('messages').addEventListener('scroll', () => {
    if ($('messages').scrollTop < 120) loadOlder();
    if (isAtBottom()) { markRead(); $('jump-btn').classList.add('hidden'); }
  });
  $('jump-btn').onclick = () => { scrollToBottom(); $('jump-btn').classList.add('hidden'); $('composer-input').focus(); };
}
