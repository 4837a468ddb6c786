// The call screen of the chat page: "Voice call" and "Video call" in a DM's header,
// ringing with "Accept" and "Decline" on every tab of the callee, and in a call "Mute",
// "Camera", "Hang up", a timer and a connection-quality hint (from getStats). The calls
// themselves are ../chat-calls.js's CallManager; the call records are messages
// (./media.js renders them). `document.body.dataset.call` holds the state shown.
import { CallManager } from '../chat-calls.js';
import { api, toast } from '../common.js';
import { $, S, otherOfDm, userName } from './state.js';
import { fmtDuration } from './media.js';

const ENDED = {
  hangup: 'Call ended', declined: 'Declined', busy: 'Busy in another call', missed: 'No answer',
  unavailable: 'Not online', failed: 'Call failed', 'answered-elsewhere': 'Answered on another device',
  'declined-elsewhere': 'Declined on another device', glare: 'Call ended',
};

let calls = null;
let ringing = null; // the incoming call shown
let ticker = null;
let hideTimer = null;

/** Start the call manager for the logged-in client (ICE servers from /api/ice). */
export async function startCalls(client) {
  let iceServers = [];
  try { iceServers = (await api('GET', '/api/ice')).ice_servers || []; } catch (_) { /* host candidates only */ }
  calls = new CallManager(client, { iceServers, userId: S.me.id });
  window.chatCalls = calls; // for debugging and tests
  calls.on('incoming', ({ call }) => { ringing = call; render(); });
  calls.on('state', () => render());
  calls.on('local-stream', ({ stream }) => { $('local-video').srcObject = stream; });
  calls.on('remote-stream', ({ stream }) => {
    const v = $('remote-video');
    v.srcObject = stream;
    v.play().catch(() => {});
  });
  calls.on('ended', ({ call, reason }) => {
    if (ringing && ringing.id === call.id) ringing = null;
    if (calls.call || ringing) { render(); return; }
    showEnded(`${ENDED[reason] || 'Call ended'}${call.durationMs ? ` · ${fmtDuration(call.durationMs)}` : ''}`);
  });
  updateCallButtons();
}

/** Show the call buttons in a DM's header. */
export function updateCallButtons() {
  const dm = !!(S.active && S.active.startsWith('dm:'));
  const on = dm && !!calls;
  $('call-voice-btn').classList.toggle('hidden', !on);
  $('call-video-btn').classList.toggle('hidden', !on);
}

async function startCall(video) {
  if (!calls || !S.active || !S.active.startsWith('dm:')) return;
  const peer = otherOfDm(S.active);
  try {
    await calls.start(peer, { video, name: userName(peer) });
  } catch (ex) {
    toast(ex.code === 'not_found' ? `${userName(peer)} is not online` : `Call failed: ${ex.message}`, 'error');
  }
}

function show(el, on) { $(el).classList.toggle('hidden', !on); }

function render() {
  clearTimeout(hideTimer);
  const call = calls && calls.call;
  const panel = $('call-panel');
  const state = call ? call.state : ringing ? 'incoming' : 'idle';
  document.body.dataset.call = state;
  panel.dataset.state = state;
  panel.classList.toggle('hidden', state === 'idle');
  if (state === 'idle') { stopTicker(); return; }
  const c = call || ringing;
  const video = c.media === 'video';
  panel.classList.toggle('video', video && !!call);
  $('call-title').textContent = c.peer.name || userName(c.peer.id);
  const status = {
    ringing: 'Ringing…',
    incoming: `Incoming ${video ? 'video' : 'voice'} call`,
    connecting: 'Connecting…',
    connected: 'Connected',
  }[state] || '';
  $('call-status').textContent = status;
  show('call-accept', !call && !!ringing);
  show('call-decline', !call && !!ringing);
  show('call-mute', !!call);
  show('call-camera', !!call && video);
  show('call-hangup', !!call);
  if (call) {
    $('call-mute').setAttribute('aria-pressed', call.muted ? 'true' : 'false');
    $('call-camera').setAttribute('aria-pressed', call.cameraOff ? 'false' : 'true');
  }
  if (state === 'connected') startTicker(); else { stopTicker(); $('call-timer').textContent = ''; $('call-quality').textContent = ''; }
}

function startTicker() {
  if (ticker) return;
  let n = 0;
  const tick = async () => {
    const call = calls.call;
    if (!call || call.state !== 'connected') { stopTicker(); return; }
    $('call-timer').textContent = fmtDuration(Date.now() - call.startedAt);
    if (n++ % 2 === 0) {
      const st = await calls.stats().catch(() => null);
      if (st && calls.call === call) {
        const q = $('call-quality');
        q.dataset.quality = st.quality;
        q.textContent = st.quality === 'unknown' ? '' : `Connection ${st.quality}${st.rttMs != null ? ` (${Math.round(st.rttMs)} ms)` : ''}`;
      }
    }
  };
  tick();
  ticker = setInterval(tick, 1000);
}

function stopTicker() { clearInterval(ticker); ticker = null; }

function showEnded(text) {
  stopTicker();
  document.body.dataset.call = 'ended';
  const panel = $('call-panel');
  panel.dataset.state = 'ended';
  panel.classList.remove('video', 'hidden');
  $('call-status').textContent = text;
  $('call-timer').textContent = '';
  $('call-quality').textContent = '';
  for (const id of ['call-accept', 'call-decline', 'call-mute', 'call-camera', 'call-hangup']) show(id, false);
  $('remote-video').srcObject = null;
  $('local-video').srcObject = null;
  hideTimer = setTimeout(() => { if (!calls.call && !ringing) { panel.classList.add('hidden'); document.body.dataset.call = 'idle'; } }, 3000);
}

/** Wire the call buttons. */
export function wireCalls() {
  $('call-voice-btn').onclick = () => startCall(false);
  $('call-video-btn').onclick = () => startCall(true);
  $('call-accept').onclick = () => {
    if (ringing) calls.answer(ringing.id).catch((ex) => toast(`Could not answer: ${ex.message}`, 'error'));
    ringing = null;
  };
  $('call-decline').onclick = () => { if (ringing) calls.decline(ringing.id); };
  $('call-hangup').onclick = () => calls.hangup();
  $('call-mute').onclick = () => calls.call && calls.setMuted(!calls.call.muted);
  $('call-camera').onclick = () => calls.call && calls.setCamera(calls.call.cameraOff);
  // closing or reloading the page ends its call (the other side would wait otherwise)
  window.addEventListener('pagehide', () => { if (calls) calls.hangup(); });
}
