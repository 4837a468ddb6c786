// The chat page (/): login, rooms, DMs, messages, presence, typing, uploads.
// This entry wires the page and opens the chat once logged in (the client and its
// events). The parts live in ./chat/: state.js (shared state), auth.js (login,
// register, logout), sidebar.js (rooms, DMs, unread counts, people, room dialogs),
// messages.js (the open channel's messages) and presence.js (members, typing);
// sending and uploads are below. They call each other only from event handlers,
// never while loading, so their imports of each other may go both ways.
import { ChatClient } from './chat-client.js';
import { api, whoami, h, fillIcons, bindConnectionPill, toast } from './common.js';
import { $, S, otherOfDm } from './chat/state.js';
import { showAuth, wireAuth } from './chat/auth.js';
import { loadUserCache, learnUser, loadRooms, refreshChannels, toggleSidebar, wireSidebar } from './chat/sidebar.js';
import {
  select, getView, addMessage, scrollToBottom, markRead, editLastOwn, onMessage, onEdit, onDelete, onReset, wireMessages,
} from './chat/messages.js';
import { onTyping, onPresence, renderTyping, wirePresence } from './chat/presence.js';

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

// ------------------------------------------------------------------ uploads

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

// ------------------------------------------------------------------ composer

function autosize(ta) {
  ta.style.height = 'auto';
  ta.style.height = Math.min(ta.scrollHeight, 160) + 'px';
}

/** Wire the composer form and its textarea, the attach button and dropping files on the chat. */
function wireComposer() {
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
  main.addEventListener('dragover', (e) => { if (e.dataTransfer?.types?.includes('Files')) { e.preventDefault(); main.classList.add('drop-hint'); } });
  main.addEventListener('dragleave', (e) => { if (e.target === main) main.classList.remove('drop-hint'); });
  main.addEventListener('drop', (e) => {
    main.classList.remove('drop-hint');
    const files = [...(e.dataTransfer?.files || [])];
    if (files.length) { e.preventDefault(); uploadFiles(files); }
  });
}

// ------------------------------------------------------------------ wiring

function wire() {
  wireAuth(start);
  wireSidebar();
  wirePresence();
  wireComposer();
  wireMessages();
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
