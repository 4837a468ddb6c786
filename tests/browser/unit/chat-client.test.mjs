// Unit tests of static/chat-client.js with a fake WebSocket and a manual clock.
// Run: node --test tests/browser/unit/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient, ChatError, backoffDelay, dmChannel } from '../../../static/chat-client.js';
import { FakeClock, flush, makeFakeWebSocket } from './fakes.mjs';

function setup(opts = {}) {
  const clock = new FakeClock();
  const WS = makeFakeWebSocket();
  const client = new ChatClient({
    url: 'ws://test/ws', WebSocket: WS, now: clock.now, timers: clock.timersApi,
    random: () => 0.5, ...opts,
  });
  return { clock, WS, client };
}

async function connected(opts) {
  const env = setup(opts);
  const p = env.client.connect();
  await flush();
  env.WS.last.serverWelcome();
  await p;
  return env;
}

const msg = (channel, seq, text, extra = {}) => ({
  ev: 'message', channel, seq, ts: 1764160000000 + seq, from: { id: '7', name: 'bob' }, data: { type: 'text', text }, ...extra,
});

test('backoffDelay: exponential cap and full jitter bounds', () => {
  const cfg = { baseMs: 500, maxMs: 30000, factor: 2 };
  // with random() close to 1 the delay approaches the cap, which doubles per attempt
  const near1 = () => 0.999999;
  const caps = [0, 1, 2, 3, 4, 5, 6, 7, 10].map((a) => backoffDelay(a, cfg, near1));
  assert.deepEqual(caps.slice(0, 6), [499, 999, 1999, 3999, 7999, 15999]);
  assert.equal(caps[6], 29999); // capped at maxMs
  assert.equal(caps[8], 29999);
  // random() == 0 gives 0: full jitter goes all the way down
  assert.equal(backoffDelay(5, cfg, () => 0), 0);
  // real randomness stays inside [0, cap)
  for (let attempt = 0; attempt < 12; attempt++) {
    const cap = Math.min(30000, 500 * 2 ** attempt);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(attempt, cfg);
      assert.ok(d >= 0 && d < cap, `attempt ${attempt}: ${d} not in [0,${cap})`);
    }
  }
  // jitter actually spreads values
  const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(6, cfg)));
  assert.ok(spread.size > 10);
});

test('dmChannel sorts ids as strings', () => {
  assert.equal(dmChannel('42', '7'), 'dm:42,7');
  assert.equal(dmChannel(7, 42), 'dm:42,7');
  assert.equal(dmChannel('1', '2'), 'dm:1,2');
});

test('token goes into ?token= by default, or into a first auth frame', async () => {
  const a = setup({ token: 'abc.def' });
  a.client.connect();
  await flush();
  assert.equal(a.WS.last.url, 'ws://test/ws?token=abc.def');
  const b = setup({ token: async () => 'tok', tokenMode: 'frame' });
  const p = b.client.connect();
  await flush();
  assert.equal(b.WS.last.url, 'ws://test/ws');
  b.WS.last.serverOpen();
  const auth = b.WS.last.sent[0];
  assert.deepEqual({ ...auth, id: 0 }, { id: 0, op: 'auth', token: 'tok' });
  // a server that allows anonymous readers welcomes the anonymous session first
  b.WS.last.serverSend({ ev: 'welcome', session: 's', user: { id: 'anonymous', name: 'anonymous' }, heartbeat_s: 10 });
  assert.equal(b.client.state, 'connecting');
  b.WS.last.serverSend({ ev: 'welcome', session: 's', user: { id: '1', name: 'x' }, heartbeat_s: 10 });
  assert.equal(b.client.state, 'connecting');
  b.WS.last.reply(auth, {});
  const w = await p;
  assert.equal(w.user.name, 'x');
  assert.equal(b.client.heartbeatS, 10);
  // a refused token stops the client
  const d = setup({ token: 'bad', tokenMode: 'frame' });
  const errs = [];
  d.client.on('error', (e) => errs.push(e.code));
  const pd = d.client.connect();
  await flush();
  d.WS.last.serverOpen();
  d.WS.last.replyError(d.WS.last.sent[0], 'unauthorized', 'bad token');
  await assert.rejects(pd, (e) => e.code === 'closed');
  assert.deepEqual(errs, ['unauthorized']);
  assert.equal(d.client.state, 'closed');
  // no token: cookie auth, nothing sent
  const c = setup();
  c.client.connect();
  await flush();
  c.WS.last.serverOpen();
  assert.equal(c.WS.last.sent.length, 0);
  assert.equal(c.WS.last.url, 'ws://test/ws');
});

test('reconnect delays grow with attempts and states are reported', async () => {
  const { clock, WS, client } = await connected({ random: () => 0.999999 });
  const states = [];
  client.on('state', (e) => states.push(e.state));
  WS.last.serverClose(1006);
  assert.equal(client.state, 'reconnecting');
  const delays = [];
  for (let i = 0; i < 5; i++) {
    const before = WS.instances.length;
    const start = clock.t;
    // step until a new socket appears
    while (WS.instances.length === before) await clock.advance(1);
    delays.push(clock.t - start);
    WS.last.serverClose(1006); // fails before welcome
  }
  // 499, 999, 1999, 3999, 7999 (±1 ms step granularity)
  const expected = [499, 999, 1999, 3999, 7999];
  delays.forEach((d, i) => assert.ok(Math.abs(d - expected[i]) <= 1, `delay ${i}: ${d} vs ${expected[i]}`));
  assert.ok(states.includes('reconnecting'));
  // success resets the backoff after a stable connection
  while (WS.last.readyState !== 0) await clock.advance(100);
  WS.last.serverWelcome();
  await flush();
  assert.equal(client.state, 'open');
  await clock.advance(6000);
  WS.last.serverClose(1001);
  assert.equal(client.attempt, 1); // attempt 0 used for this reconnect
  assert.ok(client.reconnectAt - clock.t <= 500);
});

test('request/reply matching by id, errors and timeouts', async () => {
  const { clock, WS, client } = await connected();
  const ws = WS.last;
  const p1 = client.request('ping');
  const p2 = client.request('presence', { channel: 'room:a' });
  const [f1, f2] = ws.sent;
  assert.notEqual(f1.id, f2.id);
  assert.equal(f2.op, 'presence');
  assert.equal(f2.channel, 'room:a');
  // answer out of order
  ws.reply(f2, { members: [{ id: '1', name: 'a', conns: 1 }] });
  ws.reply(f1, { ts: 123 });
  assert.deepEqual(await p1, { ts: 123 });
  assert.equal((await p2).members[0].name, 'a');
  // error reply
  const p3 = client.request('join', { channel: 'room:secret' });
  ws.replyError(ws.sent[2], 'forbidden', 'not a member');
  await assert.rejects(p3, (e) => e instanceof ChatError && e.code === 'forbidden' && e.message === 'not a member');
  // timeout
  const p4 = client.request('history', { channel: 'room:a' }, { timeoutMs: 3000 });
  const late = ws.sent[3];
  let settled = false;
  p4.catch(() => {}).finally(() => { settled = true; });
  await clock.advance(2999);
  assert.equal(settled, false);
  await clock.advance(2);
  await assert.rejects(p4, (e) => e.code === 'timeout');
  ws.reply(late, { messages: [] }); // a late reply is ignored without error
  // requests made while disconnected wait for the connection
  ws.serverClose(1006);
  const p5 = client.request('channels');
  await clock.advance(1000);
  WS.last.serverWelcome();
  const f5 = WS.last.ops('channels')[0];
  assert.ok(f5);
  WS.last.reply(f5, { channels: [] });
  assert.deepEqual(await p5, { channels: [] });
});

test('in-flight requests fail with "disconnected" when the connection drops', async () => {
  const { WS, client } = await connected();
  const p = client.request('history', { channel: 'room:a' });
  WS.last.serverClose(1006);
  await assert.rejects(p, (e) => e.code === 'disconnected');
});

test('rejoin after reconnect uses since = last seq and epoch; missed messages are delivered once', async () => {
  const { clock, WS, client } = await connected();
  const got = [];
  const ch = client.channel('room:lobby');
  ch.on('message', (m) => got.push(m.seq));
  const joined = ch.join();
  const j = WS.last.ops('join')[0];
  assert.deepEqual({ ...j, id: 0 }, { id: 0, op: 'join', channel: 'room:lobby' });
  WS.last.reply(j, { channel: 'room:lobby', seq: 10, epoch: 'e1', messages: [msg('room:lobby', 9, 'a'), msg('room:lobby', 10, 'b')], presence: [{ id: '7', name: 'bob', conns: 1 }] });
  const reply = await joined;
  assert.equal(reply.messages.length, 2);
  assert.equal(ch.memberList()[0].name, 'bob');
  WS.last.serverSend(msg('room:lobby', 11, 'c'));
  WS.last.serverSend(msg('room:lobby', 11, 'c')); // duplicate
  WS.last.serverSend(msg('room:lobby', 10, 'b')); // already in the join reply
  assert.deepEqual(got, [11]);
  WS.last.serverClose(1006);
  await clock.advance(1000);
  WS.last.serverWelcome();
  const rj = WS.last.ops('join')[0];
  assert.equal(rj.channel, 'room:lobby');
  assert.equal(rj.since, 11);
  assert.equal(rj.epoch, 'e1');
  // a live event racing with the rejoin reply is held until the missed ones are delivered
  WS.last.serverSend(msg('room:lobby', 13, 'e'));
  assert.deepEqual(got, [11]);
  WS.last.reply(rj, { channel: 'room:lobby', seq: 13, epoch: 'e1', recovered: true, messages: [msg('room:lobby', 12, 'd'), msg('room:lobby', 13, 'e')] });
  await flush();
  assert.deepEqual(got, [11, 12, 13]);
  assert.equal(ch.seq, 13);
  assert.equal(ch.state, 'joined');
});

test('recovered:false emits reset with the fresh history', async () => {
  const { clock, WS, client } = await connected();
  const ch = client.channel('room:lobby');
  const resets = [];
  const got = [];
  ch.on('reset', (e) => resets.push(e));
  ch.on('message', (m) => got.push(m.seq));
  const joined = ch.join();
  WS.last.reply(WS.last.ops('join')[0], { channel: 'room:lobby', seq: 5, epoch: 'e1', messages: [msg('room:lobby', 5, 'x')] });
  await joined;
  WS.last.serverClose(1006);
  await clock.advance(1000);
  WS.last.serverWelcome();
  const rj = WS.last.ops('join')[0];
  assert.equal(rj.since, 5);
  const fresh = [msg('room:lobby', 2000, 'y'), msg('room:lobby', 2001, 'z')];
  WS.last.reply(rj, { channel: 'room:lobby', seq: 2001, epoch: 'e2', recovered: false, messages: fresh });
  await flush();
  assert.equal(resets.length, 1);
  assert.deepEqual(resets[0].messages.map((m) => m.seq), [2000, 2001]);
  assert.equal(resets[0].epoch, 'e2');
  assert.deepEqual(got, []); // history comes with the reset, not as messages
  WS.last.serverSend(msg('room:lobby', 2001, 'z'));
  WS.last.serverSend(msg('room:lobby', 2002, 'w'));
  assert.deepEqual(got, [2002]);
  // next rejoin uses the new epoch
  WS.last.serverClose(1006);
  await clock.advance(1000);
  WS.last.serverWelcome();
  const rj2 = WS.last.ops('join')[0];
  assert.equal(rj2.since, 2002);
  assert.equal(rj2.epoch, 'e2');
});

test('unacknowledged publishes are retried with the same client_id after reconnect', async () => {
  const { clock, WS, client } = await connected();
  const p = client.publish('room:lobby', { type: 'text', text: 'hi' });
  const first = WS.last.ops('publish')[0];
  assert.equal(first.client_id, p.clientId);
  assert.deepEqual(first.data, { type: 'text', text: 'hi' });
  assert.equal(client.outbox.length, 1);
  WS.last.serverClose(1006); // no ack
  // published while offline: queued
  const p2 = client.publish('room:lobby', { type: 'text', text: 'offline' }, { clientId: 'mine-1' });
  await clock.advance(1000);
  WS.last.serverWelcome();
  const resent = WS.last.ops('publish');
  assert.equal(resent.length, 2);
  assert.equal(resent[0].client_id, first.client_id);
  assert.equal(resent[1].client_id, 'mine-1');
  WS.last.reply(resent[0], { seq: 3, ts: 1, duplicate: true });
  WS.last.reply(resent[1], { seq: 4, ts: 2 });
  assert.deepEqual(await p, { seq: 3, ts: 1, duplicate: true });
  assert.deepEqual(await p2, { seq: 4, ts: 2 });
  assert.equal(client.outbox.length, 0);
});

test('publish: "unavailable" is retried with the same client_id, "forbidden" rejects', async () => {
  const { clock, WS, client } = await connected();
  const p = client.publish('room:a', { type: 'text', text: 'x' });
  WS.last.replyError(WS.last.ops('publish')[0], 'unavailable');
  await clock.advance(6000);
  const again = WS.last.ops('publish');
  assert.equal(again.length, 2);
  assert.equal(again[1].client_id, again[0].client_id);
  WS.last.reply(again[1], { seq: 1, ts: 1 });
  assert.equal((await p).seq, 1);
  const q = client.publish('room:b', { type: 'text', text: 'y' });
  WS.last.replyError(WS.last.ops('publish')[2], 'forbidden');
  await assert.rejects(q, (e) => e.code === 'forbidden');
  assert.equal(client.outbox.length, 0);
});

test('publish gives up after publishTimeoutMs', async () => {
  const { clock, WS, client } = await connected({ publishTimeoutMs: 5000, requestTimeoutMs: 100000 });
  const p = client.publish('room:a', { type: 'text', text: 'x' });
  WS.last.serverClose(1006);
  const rejected = assert.rejects(p, (e) => e.code === 'timeout');
  await clock.advance(5001);
  await rejected;
  assert.equal(client.outbox.length, 0);
});

test('presence, typing, edit, delete events per channel; typing throttled', async () => {
  const { clock, WS, client } = await connected();
  const a = client.channel('room:a');
  const seen = [];
  for (const t of ['presence', 'typing', 'edit', 'delete']) a.on(t, (e) => seen.push(t + (e.initial ? '*' : '')));
  const other = [];
  client.channel('room:b').on('typing', () => other.push('b'));
  const joined = a.join();
  WS.last.reply(WS.last.ops('join')[0], { channel: 'room:a', seq: 0, messages: [], presence: [] });
  await joined;
  WS.last.serverSend({ ev: 'presence', channel: 'room:a', joined: [{ id: '7', name: 'bob' }], left: [] });
  assert.deepEqual(a.memberList().map((m) => m.name), ['bob']);
  WS.last.serverSend({ ev: 'typing', channel: 'room:a', user: { id: '7', name: 'bob' } });
  WS.last.serverSend({ ev: 'edit', channel: 'room:a', seq: 1, data: { type: 'text', text: 'z' } });
  WS.last.serverSend({ ev: 'delete', channel: 'room:a', seq: 1 });
  WS.last.serverSend({ ev: 'presence', channel: 'room:a', joined: [], left: [{ id: '7', name: 'bob' }] });
  assert.deepEqual(seen, ['presence*', 'presence', 'typing', 'edit', 'delete', 'presence']);
  assert.equal(a.memberList().length, 0);
  assert.deepEqual(other, []);
  // typing: once per 2 s
  assert.equal(client.typing('room:a'), true);
  assert.equal(client.typing('room:a'), false);
  await clock.advance(1999);
  assert.equal(client.typing('room:a'), false);
  await clock.advance(2);
  assert.equal(client.typing('room:a'), true);
  assert.equal(client.typing('room:b'), true);
  assert.equal(WS.last.ops('typing').length, 3);
});

test('heartbeat: ping after 2 x heartbeat_s of silence; no reply kills the connection', async () => {
  const { clock, WS, client } = await connected();
  const ws = WS.last; // heartbeat_s = 25
  await clock.advance(49_000);
  assert.equal(ws.ops('ping').length, 0);
  ws.serverSend({ ev: 'typing', channel: 'room:x', user: { id: '1' } }); // any frame counts
  await clock.advance(49_000);
  assert.equal(ws.ops('ping').length, 0);
  await clock.advance(11_000); // tick at +2 s sends the ping, reply within 10 s
  const ping = ws.ops('ping');
  assert.equal(ping.length, 1);
  ws.reply(ping[0], { ts: 1 }); // alive
  await clock.advance(10_000);
  assert.equal(client.state, 'open');
  // now silence, and the ping is not answered
  await clock.advance(80_000);
  assert.ok(ws.ops('ping').length >= 2);
  assert.notEqual(ws.closedByClient, null);
  assert.notEqual(WS.last, ws); // a new connection was started
  assert.ok(['reconnecting', 'connecting'].includes(client.state) || WS.last.readyState === 0);
});

test('join failure (forbidden) rejects and is not retried; close() rejects everything', async () => {
  const { clock, WS, client } = await connected();
  const j = client.join('room:secret');
  WS.last.replyError(WS.last.ops('join')[0], 'forbidden');
  await assert.rejects(j, (e) => e.code === 'forbidden');
  assert.equal(client.channel('room:secret').state, 'failed');
  WS.last.serverClose(1006);
  await clock.advance(1000);
  WS.last.serverWelcome();
  assert.equal(WS.last.ops('join').length, 0);
  const pub = client.publish('room:a', { type: 'text', text: 'x' });
  client.close();
  await assert.rejects(pub, (e) => e.code === 'closed');
  assert.equal(client.state, 'closed');
  const before = WS.instances.length;
  await clock.advance(60_000);
  assert.equal(WS.instances.length, before);
});

test('close code 4001 stops reconnecting', async () => {
  const { clock, WS, client } = await connected();
  const errors = [];
  client.on('error', (e) => errors.push(e.code));
  WS.last.serverClose(4001, 'unauthorized');
  await clock.advance(60_000);
  assert.equal(WS.instances.length, 1);
  assert.equal(client.state, 'closed');
  assert.deepEqual(errors, ['unauthorized']);
});

test('join passes limit; leave stops rejoining; typing is not sent while offline', async () => {
  const { clock, WS, client } = await connected();
  const a = client.join('ticker:ACME', { limit: 1 });
  const j = WS.last.ops('join')[0];
  assert.equal(j.limit, 1);
  WS.last.reply(j, { channel: 'ticker:ACME', seq: 7, epoch: 'e', messages: [{ channel: 'ticker:ACME', seq: 7, ts: 1, from: { id: 'p', name: 'p' }, data: { price: 1 } }] });
  assert.equal((await a).messages[0].data.price, 1);
  // joining again while joined returns the same reply without a frame
  await client.join('ticker:ACME');
  assert.equal(WS.last.ops('join').length, 1);
  const left = client.leave('ticker:ACME');
  WS.last.reply(WS.last.ops('leave')[0], {});
  await left;
  WS.last.serverClose(1006);
  assert.equal(client.typing('room:a'), false);
  await clock.advance(1000);
  WS.last.serverWelcome();
  assert.equal(WS.last.ops('join').length, 0);
  assert.equal(WS.last.ops('typing').length, 0);
});

test('ticker rejoin: recovered with the last value delivers it as a message', async () => {
  const { clock, WS, client } = await connected();
  const got = [];
  client.channel('ticker:ACME').on('message', (m) => got.push(m.data.price));
  const a = client.join('ticker:ACME');
  WS.last.reply(WS.last.ops('join')[0], { channel: 'ticker:ACME', seq: 7, epoch: 'e', messages: [] });
  await a;
  WS.last.serverClose(1001);
  await clock.advance(1000);
  WS.last.serverWelcome();
  const rj = WS.last.ops('join')[0];
  assert.equal(rj.since, 7);
  WS.last.reply(rj, { channel: 'ticker:ACME', seq: 8, epoch: 'e', recovered: true, messages: [{ seq: 8, ts: 2, from: { id: 'p', name: 'p' }, data: { price: 2 } }] });
  await flush();
  assert.deepEqual(got, [2]);
});

test('an error frame without id is reported, the connection stays', async () => {
  const { WS, client } = await connected();
  const errs = [];
  client.on('error', (e) => errs.push(e.code));
  WS.last.serverSend({ error: { code: 'bad_request', message: 'not JSON' } });
  assert.deepEqual(errs, ['bad_request']);
  assert.equal(client.state, 'open');
  WS.last.onmessage({ data: 'garbage{' }); // unparsable frames are ignored
  assert.equal(client.state, 'open');
});
