// The chat page (/): login, rooms, DMs, messages, presence, typing, uploads.
// This entry wires the page and opens the chat once logged in (the client and its
// events). The parts live in ./chat/: state.js (shared state), auth.js (login,
// register, logout), sidebar.js (rooms, DMs, unread counts, people, room dialogs),
// messages.js (the open channel's messages), presence.js (members, typing),
// composer.js (sending, uploads), voice.js and video-msg.js (recording voice and
// video messages), media.js (voice, video and call record rows) and calls.js (the call
// screen). They call each other only from event handlers, never while loading, so
// their imports of each other may go both ways.
import { ChatClient } from './chat-client.js';
import { whoami, fillIcons, bindConnectionPill, toast } from './common.js';
import { $, S, otherOfDm } from './chat/state.js';
import { showAuth, wireAuth } from './chat/auth.js';
import { loadUserCache, learnUser, loadRooms, refreshChannels, toggleSidebar, wireSidebar } from './chat/sidebar.js';
import { select, markRead, onMessage, onEdit, onDelete, onReset, wireMessages } from './chat/messages.js';
import { onTyping, onPresence, renderTyping, wirePresence } from './chat/presence.js';
import { wireComposer } from './chat/composer.js';
import { wireVoice } from './chat/voice.js';
import { wireVideoMessages } from './chat/video-msg.js';
import { startCalls, wireCalls } from './chat/calls.js';

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
    if (document.body.dataset.conn !== 'kicked') document.body.dataset.conn = state;
    if (state === 'open' && reconnected) refreshChannels();
  });
  client.on('disconnect', (e) => toast(`Disconnected by the server: ${e.reason || e.code}`, 'error'));
  client.on('error', (e) => {
    if (e.code === 'unauthorized') { toast('Session expired, please log in again', 'error'); showAuth(); }
    if (e.code === 'kicked') showKicked(e.message);
  });
  client.connect().catch(() => {});
  startCalls(client);

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

/** A moderator removed this user: say so, and stay disconnected until a reload. */
function showKicked(reason) {
  const el = $('kicked');
  el.textContent = `You were disconnected by a moderator (${reason}). Reload the page to reconnect.`;
  el.classList.remove('hidden');
  document.body.dataset.conn = 'kicked';
}

// ------------------------------------------------------------------ wiring

function wire() {
  wireAuth(start);
  wireSidebar();
  wirePresence();
  wireComposer();
  wireMessages();
  wireVoice();
  wireVideoMessages();
  wireCalls();
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
