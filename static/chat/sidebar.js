// The sidebar: the lists of rooms and DMs with their unread counts, the names of the
// users (cached in localStorage), finding people to open a DM with, creating rooms
// and inviting people into private ones.
import { dmChannel } from '../chat-client.js';
import { api, h, clear, icon, toast, avatar, debounce } from '../common.js';
import { $, S, userName, otherOfDm, channelTitle } from './state.js';
import { select, fillView } from './messages.js';

// ------------------------------------------------------------------ names

export function loadUserCache() {
  try {
    const o = JSON.parse(localStorage.getItem('chat.users') || '{}');
    for (const [id, name] of Object.entries(o)) S.users.set(id, name);
  } catch (_) { /* ignore */ }
}
const saveUserCache = debounce(() => {
  try { localStorage.setItem('chat.users', JSON.stringify(Object.fromEntries(S.users))); } catch (_) { /* ignore */ }
}, 500);
export function learnUser(u) {
  if (!u || u.id === undefined || !u.name) return;
  const id = String(u.id);
  if (S.users.get(id) !== u.name) {
    S.users.set(id, u.name);
    saveUserCache();
    if ([...S.dms.values()].some((d) => d.otherId === id)) renderSidebar();
  }
}

// ------------------------------------------------------------------ channels

export async function loadRooms(quiet = false) {
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
export async function refreshChannels() {
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

// ------------------------------------------------------------------ rendering

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

export function renderSidebar() {
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

export function toggleSidebar(open) {
  const sb = $('sidebar');
  const isOpen = open ?? !sb.classList.contains('open');
  sb.classList.toggle('open', isOpen);
  $('menu-btn').setAttribute('aria-expanded', String(isOpen));
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

/** Wire the menu button, people search and the room and invite dialogs. */
export function wireSidebar() {
  $('menu-btn').onclick = () => toggleSidebar();
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
  // a tap on the chat closes the sidebar drawer (mobile)
  $('main').addEventListener('click', () => { if ($('sidebar').classList.contains('open')) toggleSidebar(false); });
}
