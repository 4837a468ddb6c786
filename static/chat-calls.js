// Voice and video calls between two people, over RTCPeerConnection, signalled with the
// chat server's `signal` op (docs/PROTOCOL.md, "Calls").
//
//   import { CallManager } from '/static/chat-calls.js';
//   const calls = new CallManager(client, { iceServers });      // client: a ChatClient
//   calls.on('incoming', ({ call }) => calls.answer(call.id));  // or calls.decline(call.id)
//   calls.on('state', ({ call, state }) => ...);   // ringing, incoming, connecting, connected, ended
//   calls.on('local-stream', ({ call, stream }) => video.srcObject = stream);
//   calls.on('remote-stream', ({ call, stream }) => remote.srcObject = stream);
//   calls.on('ended', ({ call, reason }) => ...);  // hangup, declined, busy, missed, answered-elsewhere, ...
//   await calls.start(userId, { video: true });
//   calls.setMuted(true); calls.setCamera(false); await calls.stats(); calls.hangup();
//
// One call at a time: a ring while in a call is answered `busy`. Each tab has its own
// `tab` id; the callee's `accept` names its tab, and the caller's `offer`, `ice` carry
// it, so the callee's other tabs stop ringing when they see an offer for another tab
// ("answered-elsewhere"). After a `decline` or `busy` the caller sends `hangup` so the
// callee's other tabs stop ringing too. Glare (two people ring each other at once): the
// call of the lower user id wins; the other caller drops its own call and answers.

const RING_MS = 30000;

class Emitter {
  constructor() { this._h = new Map(); }
  on(type, fn) {
    if (!this._h.has(type)) this._h.set(type, new Set());
    this._h.get(type).add(fn);
    return () => this.off(type, fn);
  }
  off(type, fn) { const s = this._h.get(type); if (s) s.delete(fn); }
  emit(type, ev) {
    for (const fn of [...(this._h.get(type) || [])]) {
      try { fn(ev); } catch (err) { setTimeout(() => { throw err; }); }
    }
  }
}

/** Whether user id `a` sorts before `b` (numerically when both are numbers). */
export function lowerId(a, b) {
  a = String(a); b = String(b);
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) return a.length !== b.length ? a.length < b.length : a < b;
  return a < b;
}

/** A short random id (call ids, tab ids). */
export function randomId(prefix) {
  const c = globalThis.crypto;
  const r = c && c.randomUUID ? c.randomUUID().replace(/-/g, '').slice(0, 12) : Math.random().toString(36).slice(2, 14);
  return `${prefix}-${r}`;
}

/** Rough quality from getStats figures: round-trip time and the share of packets lost. */
export function qualityOf({ rttMs, lossPct }) {
  if (rttMs == null && lossPct == null) return 'unknown';
  if ((rttMs ?? 0) > 400 || (lossPct ?? 0) > 8) return 'poor';
  if ((rttMs ?? 0) > 150 || (lossPct ?? 0) > 2) return 'fair';
  return 'good';
}

export class CallManager extends Emitter {
  /**
   * @param client a ChatClient (its `signal()` and `signal` events)
   * @param options iceServers, tabId, RTCPeerConnection, getUserMedia(constraints),
   *   now(), setTimeout, clearTimeout (defaults: the browser's), ringMs
   */
  constructor(client, options = {}) {
    super();
    this.client = client;
    this.me = null; // set from the client's welcome (user id) or options.userId
    this.options = options;
    this.tab = options.tabId || randomId('tab');
    this.iceServers = options.iceServers || [];
    this.call = null; // the call this tab is in (ringing out, connecting, connected)
    this.incoming = new Map(); // call id -> incoming call ringing on this tab
    this._Pc = options.RTCPeerConnection || globalThis.RTCPeerConnection;
    this._gum = options.getUserMedia || ((c) => navigator.mediaDevices.getUserMedia(c));
    this._now = options.now || (() => Date.now());
    this._setTimeout = options.setTimeout || ((f, ms) => setTimeout(f, ms));
    this._clearTimeout = options.clearTimeout || ((t) => clearTimeout(t));
    this._ringMs = options.ringMs || RING_MS;
    this._off = client.on('signal', (m) => this._onSignal(m));
  }

  get myId() { return String(this.options.userId || (this.client.user && this.client.user.id) || ''); }

  /** Ring `userId`; resolves with the call once rung (rejects when the ring is refused). */
  async start(userId, { video = false, channel, name } = {}) {
    if (this.call) throw new Error('already in a call');
    const call = {
      id: randomId('call'), role: 'caller', peer: { id: String(userId), name: name || '' },
      media: video ? 'video' : 'audio', channel: channel || null, state: 'ringing',
      muted: false, cameraOff: false, startedAt: 0, tab: null,
    };
    this.call = call;
    this.emit('state', { call, state: 'ringing' });
    try {
      call.localStream = await this._gum({ audio: true, video: !!video });
      if (this.call !== call) { stopStream(call.localStream); return call; }
      this.emit('local-stream', { call, stream: call.localStream });
      const ring = { kind: 'ring', media: call.media };
      if (channel) ring.channel = channel;
      await this.client.signal(call.peer.id, call.id, ring);
    } catch (err) {
      if (this.call === call) this._end(call, err && err.code === 'not_found' ? 'unavailable' : 'failed', false);
      throw err;
    }
    call._ringTimer = this._setTimeout(() => { if (call.state === 'ringing') this._end(call, 'missed', true); }, this._ringMs);
    return call;
  }

  /** Answer a call ringing on this tab. */
  async answer(callId) {
    const inc = this.incoming.get(callId);
    if (!inc) throw new Error('no such call');
    if (this.call) this.hangup();
    this._stopRinging(inc, null);
    const call = { ...inc, state: 'connecting', tab: this.tab };
    this.call = call;
    this.emit('state', { call, state: 'connecting' });
    try {
      call.localStream = await this._gum({ audio: true, video: call.media === 'video' });
      if (this.call !== call) { stopStream(call.localStream); return call; }
      this.emit('local-stream', { call, stream: call.localStream });
      this._newPc(call);
      await this.client.signal(call.peer.id, call.id, { kind: 'accept', tab: this.tab });
    } catch (err) {
      if (this.call === call) this._end(call, 'failed', true);
      throw err;
    }
    return call;
  }

  /** Decline a call ringing on this tab (every tab of this user stops ringing). */
  decline(callId) {
    const inc = this.incoming.get(callId);
    if (!inc) return;
    this._stopRinging(inc, 'declined');
    this._signal(inc, { kind: 'decline' });
  }

  /** End the current call (or stop ringing out). */
  hangup() {
    const call = this.call;
    if (call) this._end(call, 'hangup', true);
  }

  setMuted(muted) {
    if (!this.call) return;
    this.call.muted = !!muted;
    for (const t of tracks(this.call.localStream, 'audio')) t.enabled = !muted;
    this.emit('state', { call: this.call, state: this.call.state });
  }

  setCamera(on) {
    if (!this.call) return;
    this.call.cameraOff = !on;
    for (const t of tracks(this.call.localStream, 'video')) t.enabled = !!on;
    this.emit('state', { call: this.call, state: this.call.state });
  }

  /** Figures of the connection: {rttMs, lossPct, framesDecoded, quality}. */
  async stats() {
    const pc = this.call && this.call.pc;
    if (!pc) return null;
    const report = await pc.getStats();
    let rttMs = null; let lost = 0; let received = 0; let framesDecoded = 0;
    report.forEach((s) => {
      if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime != null) rttMs = s.currentRoundTripTime * 1000;
      if (s.type === 'inbound-rtp') {
        lost += s.packetsLost || 0;
        received += s.packetsReceived || 0;
        if (s.kind === 'video') framesDecoded += s.framesDecoded || 0;
      }
    });
    const lossPct = received + lost > 0 ? (100 * lost) / (received + lost) : null;
    return { rttMs, lossPct, framesDecoded, quality: qualityOf({ rttMs, lossPct }) };
  }

  /** Stop listening to the client (and end any call). */
  close() {
    this.hangup();
    for (const inc of [...this.incoming.values()]) this._stopRinging(inc, 'closed');
    this._off();
  }

  // ---------------------------------------------------------------- internals

  _signal(call, data) {
    return this.client.signal(call.peer.id, call.id, data).catch(() => {});
  }

  _onSignal(m) {
    const d = m.data || {};
    const from = { id: String(m.from && m.from.id), name: (m.from && m.from.name) || '' };
    const call = this.call && this.call.id === m.call && this.call.peer.id === from.id ? this.call : null;
    const inc = this.incoming.get(m.call);
    switch (d.kind) {
      case 'ring': this._onRing(m.call, from, d); break;
      case 'accept': if (call && call.role === 'caller') this._onAccept(call, d); break;
      case 'offer':
        if (call && call.role === 'callee' && d.tab === this.tab) this._onOffer(call, d);
        else if (inc) this._stopRinging(inc, 'answered-elsewhere');
        break;
      case 'answer':
        if (call && call.role === 'caller' && d.tab === call.tab && call.pc) {
          call.pc.setRemoteDescription({ type: 'answer', sdp: d.sdp }).then(() => this._flushIce(call), () => this._end(call, 'failed', true));
        }
        break;
      case 'ice':
        if (call && call.pc && d.tab === call.tab) this._addIce(call, d.candidate);
        break;
      case 'decline':
      case 'busy':
        if (call && call.role === 'caller' && call.state === 'ringing') {
          this._end(call, d.kind === 'busy' ? 'busy' : 'declined', false);
          // the callee's other tabs stop ringing
          this._signal(call, { kind: 'hangup', reason: d.kind });
        }
        break;
      case 'hangup':
        if (call && (call.role === 'caller' || !d.tab || d.tab === this.tab)) this._end(call, 'hangup', false);
        else if (inc) this._stopRinging(inc, d.reason === 'decline' || d.reason === 'busy' ? 'declined-elsewhere' : 'missed');
        break;
      default: break;
    }
  }

  _onRing(id, from, d) {
    if (this.incoming.has(id) || (this.call && this.call.id === id)) return;
    const call = this.call;
    if (call && call.peer.id === from.id && call.role === 'caller' && call.state === 'ringing') {
      // glare: the lower user id's call wins
      if (lowerId(this.myId, from.id)) return; // mine wins; they drop theirs
      this._end(call, 'glare', true);
      this._addIncoming(id, from, d);
      this.answer(id).catch(() => {});
      return;
    }
    if (call) { this.client.signal(from.id, id, { kind: 'busy' }).catch(() => {}); return; }
    this._addIncoming(id, from, d);
  }

  _addIncoming(id, from, d) {
    const inc = {
      id, role: 'callee', peer: from, media: d.media === 'video' ? 'video' : 'audio',
      channel: d.channel || null, state: 'incoming', muted: false, cameraOff: false, startedAt: 0,
    };
    this.incoming.set(id, inc);
    inc._ringTimer = this._setTimeout(() => this._stopRinging(inc, 'missed'), this._ringMs + 5000);
    this.emit('incoming', { call: inc });
    this.emit('state', { call: inc, state: 'incoming' });
  }

  _stopRinging(inc, reason) {
    if (!this.incoming.delete(inc.id)) return;
    this._clearTimeout(inc._ringTimer);
    if (reason) {
      inc.state = 'ended';
      this.emit('state', { call: inc, state: 'ended' });
      this.emit('ended', { call: inc, reason });
    }
  }

  async _onAccept(call, d) {
    if (call.state !== 'ringing') return; // another tab accepted later: it sees our offer to the first
    call.tab = d.tab || null;
    call.state = 'connecting';
    this._clearTimeout(call._ringTimer);
    this.emit('state', { call, state: 'connecting' });
    const pc = this._newPc(call);
    try {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      if (this.call !== call) return;
      await this.client.signal(call.peer.id, call.id, { kind: 'offer', sdp: offer.sdp, tab: call.tab });
    } catch (_) {
      if (this.call === call) this._end(call, 'failed', true);
    }
  }

  async _onOffer(call, d) {
    const pc = call.pc;
    try {
      await pc.setRemoteDescription({ type: 'offer', sdp: d.sdp });
      this._flushIce(call);
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      if (this.call !== call) return;
      await this.client.signal(call.peer.id, call.id, { kind: 'answer', sdp: answer.sdp, tab: this.tab });
    } catch (_) {
      if (this.call === call) this._end(call, 'failed', true);
    }
  }

  _newPc(call) {
    const pc = new this._Pc({ iceServers: this.iceServers });
    call.pc = pc;
    call._ice = [];
    for (const t of tracks(call.localStream)) pc.addTrack(t, call.localStream);
    pc.onicecandidate = (e) => {
      if (e.candidate && this.call === call) this._signal(call, { kind: 'ice', candidate: e.candidate.toJSON ? e.candidate.toJSON() : e.candidate, tab: call.tab });
    };
    pc.ontrack = (e) => {
      const stream = (e.streams && e.streams[0]) || call.remoteStream || new MediaStream();
      if (!e.streams || !e.streams[0]) stream.addTrack(e.track);
      if (call.remoteStream !== stream) {
        call.remoteStream = stream;
        this.emit('remote-stream', { call, stream });
      }
    };
    pc.onconnectionstatechange = () => {
      if (this.call !== call) return;
      const s = pc.connectionState;
      if (s === 'connected' && call.state !== 'connected') {
        call.state = 'connected';
        call.startedAt = call.startedAt || this._now();
        this.emit('state', { call, state: 'connected' });
      } else if (s === 'failed') {
        this._end(call, 'failed', true);
      }
    };
    return pc;
  }

  _addIce(call, candidate) {
    if (!candidate) return;
    if (!call.pc.remoteDescription) { call._ice.push(candidate); return; }
    call.pc.addIceCandidate(candidate).catch(() => {});
  }

  _flushIce(call) {
    const queued = call._ice || [];
    call._ice = [];
    for (const c of queued) call.pc.addIceCandidate(c).catch(() => {});
  }

  _end(call, reason, tellPeer) {
    if (call.state === 'ended') return;
    if (tellPeer) this._signal(call, { kind: 'hangup', tab: call.role === 'callee' ? this.tab : call.tab, reason: reason === 'hangup' ? undefined : reason });
    this._clearTimeout(call._ringTimer);
    call.state = 'ended';
    call.durationMs = call.startedAt ? this._now() - call.startedAt : 0;
    if (call.pc) { try { call.pc.close(); } catch (_) { /* closed */ } }
    stopStream(call.localStream);
    if (this.call === call) this.call = null;
    this.emit('state', { call, state: 'ended' });
    this.emit('ended', { call, reason });
  }
}

function tracks(stream, kind) {
  if (!stream) return [];
  if (kind === 'audio') return stream.getAudioTracks();
  if (kind === 'video') return stream.getVideoTracks();
  return stream.getTracks();
}

function stopStream(stream) {
  for (const t of tracks(stream)) { try { t.stop(); } catch (_) { /* stopped */ } }
}
