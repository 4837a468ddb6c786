// CallManager (static/chat-calls.js) with a fake client, peer connection and media:
// the signals it sends and how it reacts to the other side's, several tabs of the
// callee, decline, busy, glare, ring timeout, and the stats summary.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CallManager, lowerId, qualityOf } from '../../../static/chat-calls.js';
import { FakeClock, flush } from './fakes.mjs';

class FakeClient {
  constructor(id) { this.user = { id, name: `user${id}` }; this.sent = []; this.h = new Set(); this.fail = null; }
  on(type, fn) { if (type === 'signal') this.h.add(fn); return () => this.h.delete(fn); }
  signal(to, call, data) {
    this.sent.push({ to: String(to), call, data });
    return this.fail ? Promise.reject(this.fail) : Promise.resolve({});
  }
  /** The server relays a signal from `from` to this client. */
  deliver(from, call, data) { for (const fn of this.h) fn({ ev: 'signal', from: { id: String(from), name: `user${from}` }, call, data }); }
  kinds() { return this.sent.map((s) => s.data.kind); }
  last(kind) { return [...this.sent].reverse().find((s) => s.data.kind === kind); }
}

class FakeTrack {
  constructor(kind) { this.kind = kind; this.enabled = true; this.stopped = false; }
  stop() { this.stopped = true; }
}
class FakeStream {
  constructor(video) { this.tracks = [new FakeTrack('audio'), ...(video ? [new FakeTrack('video')] : [])]; }
  getTracks() { return this.tracks; }
  getAudioTracks() { return this.tracks.filter((t) => t.kind === 'audio'); }
  getVideoTracks() { return this.tracks.filter((t) => t.kind === 'video'); }
}
class FakePc {
  static all = [];
  constructor(config) { this.config = config; this.added = []; this.remoteDescription = null; this.candidates = []; this.closed = false; FakePc.all.push(this); }
  addTrack(t) { this.added.push(t); }
  async createOffer() { return { type: 'offer', sdp: 'offer-sdp' }; }
  async createAnswer() { return { type: 'answer', sdp: 'answer-sdp' }; }
  async setLocalDescription(d) { this.localDescription = d; }
  async setRemoteDescription(d) { this.remoteDescription = d; }
  async addIceCandidate(c) { this.candidates.push(c); }
  close() { this.closed = true; }
  async getStats() {
    return new Map([
      ['p', { type: 'candidate-pair', nominated: true, currentRoundTripTime: 0.02 }],
      ['v', { type: 'inbound-rtp', kind: 'video', packetsLost: 1, packetsReceived: 99, framesDecoded: 40 }],
    ]);
  }
  connect() { this.connectionState = 'connected'; this.onconnectionstatechange(); }
}

function manager(id, tabId, clock = new FakeClock()) {
  const client = new FakeClient(id);
  const calls = new CallManager(client, {
    tabId, RTCPeerConnection: FakePc, getUserMedia: async (c) => new FakeStream(c.video),
    now: clock.now, setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout, iceServers: [{ urls: 'stun:x' }],
  });
  const events = [];
  for (const t of ['incoming', 'state', 'ended', 'local-stream', 'remote-stream']) calls.on(t, (e) => events.push([t, e.state || e.reason || '']));
  return { client, calls, events, clock };
}

test('a video call: ring, accept from one tab, offer and answer for that tab, ICE, connected, hang-up', async () => {
  const a = manager('1', 'tabA');
  const b1 = manager('2', 'tabB1');
  const b2 = manager('2', 'tabB2');
  const call = await a.calls.start('2', { video: true });
  assert.deepEqual(a.client.sent[0], { to: '2', call: call.id, data: { kind: 'ring', media: 'video' } });
  assert.equal(call.state, 'ringing');

  for (const b of [b1, b2]) b.client.deliver('1', call.id, { kind: 'ring', media: 'video' });
  assert.equal(b1.calls.incoming.size, 1);
  assert.deepEqual(b2.events[0], ['incoming', '']);

  await b1.calls.answer(call.id);
  const accept = b1.client.last('accept');
  assert.deepEqual(accept.data, { kind: 'accept', tab: 'tabB1' });
  assert.equal(b1.calls.call.state, 'connecting');

  a.client.deliver('2', call.id, accept.data);
  await flush();
  const offer = a.client.last('offer');
  assert.deepEqual(offer.data, { kind: 'offer', sdp: 'offer-sdp', tab: 'tabB1' });
  assert.deepEqual(FakePc.all.at(-1).config.iceServers, [{ urls: 'stun:x' }]);
  assert.equal(FakePc.all.at(-1).added.length, 2, 'audio and video tracks');

  // both tabs of the callee get the offer: the one that answered answers, the other stops ringing
  for (const b of [b1, b2]) b.client.deliver('1', call.id, offer.data);
  await flush();
  assert.deepEqual(b1.client.last('answer').data, { kind: 'answer', sdp: 'answer-sdp', tab: 'tabB1' });
  assert.equal(b2.calls.incoming.size, 0);
  assert.deepEqual(b2.events.at(-1), ['ended', 'answered-elsewhere']);
  assert.equal(b2.client.sent.length, 0, 'the other tab says nothing');

  a.client.deliver('2', call.id, b1.client.last('answer').data);
  await flush();
  const pcA = a.calls.call.pc;
  assert.equal(pcA.remoteDescription.sdp, 'answer-sdp');
  // ICE candidates carry the tab; candidates for another tab are ignored
  pcA.onicecandidate({ candidate: { candidate: 'c1' } });
  assert.deepEqual(a.client.last('ice').data, { kind: 'ice', candidate: { candidate: 'c1' }, tab: 'tabB1' });
  a.client.deliver('2', call.id, { kind: 'ice', candidate: { candidate: 'x' }, tab: 'tabB2' });
  a.client.deliver('2', call.id, { kind: 'ice', candidate: { candidate: 'y' }, tab: 'tabB1' });
  await flush();
  assert.deepEqual(pcA.candidates, [{ candidate: 'y' }]);

  pcA.connect();
  assert.equal(a.calls.call.state, 'connected');
  const st = await a.calls.stats();
  assert.equal(st.framesDecoded, 40);
  assert.equal(Math.round(st.rttMs), 20);
  assert.equal(st.quality, 'good');

  a.calls.setMuted(true);
  assert.equal(a.calls.call.localStream.getAudioTracks()[0].enabled, false);
  a.calls.setCamera(false);
  assert.equal(a.calls.call.localStream.getVideoTracks()[0].enabled, false);

  await a.clock.advance(5000);
  const local = a.calls.call.localStream;
  a.calls.hangup();
  assert.equal(a.client.last('hangup').data.tab, 'tabB1');
  assert.equal(a.calls.call, null);
  assert.ok(pcA.closed);
  assert.ok(local.getTracks().every((t) => t.stopped), 'camera and microphone released');
  assert.deepEqual(a.events.at(-1), ['ended', 'hangup']);
  b1.client.deliver('1', call.id, a.client.last('hangup').data);
  assert.equal(b1.calls.call, null);
  assert.deepEqual(b1.events.at(-1), ['ended', 'hangup']);
});

test('a decline ends the caller\'s call; the caller\'s hang-up stops the other tabs ringing', async () => {
  const a = manager('1', 'tabA');
  const b1 = manager('2', 'tabB1');
  const b2 = manager('2', 'tabB2');
  const call = await a.calls.start('2', { video: false });
  for (const b of [b1, b2]) b.client.deliver('1', call.id, { kind: 'ring' });
  assert.equal(b1.calls.incoming.get(call.id).media, 'audio');
  b1.calls.decline(call.id);
  assert.deepEqual(b1.client.last('decline').data, { kind: 'decline' });
  assert.deepEqual(b1.events.at(-1), ['ended', 'declined']);
  a.client.deliver('2', call.id, { kind: 'decline' });
  assert.equal(a.calls.call, null);
  assert.deepEqual(a.events.at(-1), ['ended', 'declined']);
  const hangup = a.client.last('hangup');
  assert.equal(hangup.data.reason, 'decline');
  b2.client.deliver('1', call.id, hangup.data);
  assert.equal(b2.calls.incoming.size, 0);
  assert.deepEqual(b2.events.at(-1), ['ended', 'declined-elsewhere']);
});

test('a ring while in a call is answered busy; the caller sees busy', async () => {
  const b = manager('2', 'tabB');
  await b.calls.start('3');
  b.client.deliver('1', 'other-call', { kind: 'ring' });
  assert.deepEqual(b.client.last('busy'), { to: '1', call: 'other-call', data: { kind: 'busy' } });
  assert.equal(b.calls.incoming.size, 0);

  const a = manager('1', 'tabA');
  const call = await a.calls.start('2');
  a.client.deliver('2', call.id, { kind: 'busy' });
  assert.deepEqual(a.events.at(-1), ['ended', 'busy']);
});

test('glare: both ring each other; the lower user id\'s call wins', async () => {
  const a = manager('9', 'tabA');
  const b = manager('10', 'tabB');
  const ca = await a.calls.start('10', { video: true });
  const cb = await b.calls.start('9');
  // each gets the other's ring
  a.client.deliver('10', cb.id, { kind: 'ring', media: 'audio' });
  b.client.deliver('9', ca.id, { kind: 'ring', media: 'video' });
  await flush();
  assert.equal(a.calls.call.id, ca.id, '9 < 10: alice keeps her call');
  assert.equal(a.calls.incoming.size, 0);
  assert.equal(b.calls.call.id, ca.id, 'bob dropped his and answered');
  assert.equal(b.calls.call.role, 'callee');
  assert.deepEqual(b.client.sent.filter((s) => s.call === cb.id).map((s) => s.data.kind), ['ring', 'hangup']);
  assert.deepEqual(b.client.last('accept').data, { kind: 'accept', tab: 'tabB' });
  assert.ok(b.events.some(([t, r]) => t === 'ended' && r === 'glare'));
});

test('ringing unanswered ends as missed on both sides', async () => {
  const clock = new FakeClock();
  const a = manager('1', 'tabA', clock);
  const b = manager('2', 'tabB', clock);
  const call = await a.calls.start('2');
  b.client.deliver('1', call.id, { kind: 'ring' });
  await clock.advance(30000);
  assert.deepEqual(a.events.at(-1), ['ended', 'missed']);
  b.client.deliver('1', call.id, a.client.last('hangup').data);
  assert.deepEqual(b.events.at(-1), ['ended', 'missed']);
});

test('a refused ring (callee not connected) ends the call as unavailable', async () => {
  const a = manager('1', 'tabA');
  a.client.fail = Object.assign(new Error('not connected'), { code: 'not_found' });
  await assert.rejects(a.calls.start('2'));
  assert.equal(a.calls.call, null);
  assert.deepEqual(a.events.at(-1), ['ended', 'unavailable']);
});

test('helpers: lowerId compares numeric ids as numbers; qualityOf', () => {
  assert.equal(lowerId('9', '10'), true);
  assert.equal(lowerId('10', '9'), false);
  assert.equal(lowerId('abc', 'abd'), true);
  assert.equal(qualityOf({ rttMs: 30, lossPct: 0 }), 'good');
  assert.equal(qualityOf({ rttMs: 200, lossPct: 0 }), 'fair');
  assert.equal(qualityOf({ rttMs: 30, lossPct: 10 }), 'poor');
  assert.equal(qualityOf({}), 'unknown');
});

test('voice message peaks: at most 64 integers 0-255, the loudest of each bucket on a square-root scale', async () => {
  const { foldPeaks } = await import('../../../static/chat/voice.js');
  assert.deepEqual(foldPeaks([]), []);
  assert.deepEqual(foldPeaks([0, 0.25, 1, 0.04], 2), [128, 255]);
  const many = foldPeaks(Array.from({ length: 1000 }, (_, i) => (i % 100) / 100));
  assert.equal(many.length, 64);
  assert.ok(many.every((p) => Number.isInteger(p) && p >= 0 && p <= 255));
  assert.deepEqual(foldPeaks([0.5, 0.5, 0.5]), [180, 180, 180]);
});
