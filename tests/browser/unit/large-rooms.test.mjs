// Unit tests of static/chat-client.js for protocol v1.1's bounded replies and large
// rooms: the catch-up after a rejoin whose missed messages did not fit the reply
// (`more:true`), `history` pages with `more`, presence counts and presence pages.
// Run: node --test tests/browser/unit/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient } from '../../../static/chat-client.js';
import { FakeClock, flush, makeFakeWebSocket } from './fakes.mjs';

async function connected(opts = {}) {
  const clock = new FakeClock();
  const WS = makeFakeWebSocket();
  const client = new ChatClient({
    url: 'ws://test/ws', WebSocket: WS, now: clock.now, timers: clock.timersApi,
    random: () => 0.5, ...opts,
  });
  const p = client.connect();
  await flush();
  WS.last.serverWelcome();
  await p;
  return { clock, WS, client };
}

const msg = (channel, seq, extra = {}) => ({
  ev: 'message', channel, seq, ts: 1764160000000 + seq, from: { id: '7', name: 'bob' }, data: { type: 'text', text: `m${seq}` }, ...extra,
});
const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const msgs = (channel, a, b) => range(a, b).map((s) => msg(channel, s));
const user = (i) => ({ id: String(i), name: `u${String(i).padStart(5, '0')}`, conns: 1 });
const users = (a, b) => range(a, b).map(user);

/** Join `name` (reply with seq `top`), then lose the connection and reconnect: returns the rejoin frame. */
async function joinThenReconnect(env, name, top, replyExtra = {}) {
  const { clock, WS, client } = env;
  const joined = client.join(name);
  WS.last.reply(WS.last.ops('join')[0], { channel: name, seq: top, epoch: 'e1', messages: [msg(name, top)], ...replyExtra });
  await joined;
  WS.last.serverClose(1006);
  await clock.advance(1000);
  WS.last.serverWelcome();
  return WS.last.ops('join')[0];
}

/** The one `op` frame not answered yet. */
function lastOp(ws, op) {
  const frames = ws.ops(op);
  return frames[frames.length - 1];
}

test('rejoin with more:true: history after= pages, live messages held, each message once and in order', async () => {
  const env = await connected();
  const { WS, client } = env;
  const ch = client.channel('room:big');
  const got = [];
  const joinedEvents = [];
  const states = [];
  ch.on('message', (m) => got.push(m.seq));
  ch.on('joined', (e) => joinedEvents.push(e));
  ch.on('state', (e) => states.push(e.state));
  const rj = await joinThenReconnect(env, 'room:big', 10);
  assert.equal(rj.since, 10);
  assert.equal(rj.epoch, 'e1');
  const ws = WS.last;

  // a live message racing with the rejoin reply: held
  ws.serverSend(msg('room:big', 31));
  assert.deepEqual(got, []);
  ws.reply(rj, { channel: 'room:big', seq: 30, epoch: 'e1', recovered: true, more: true, messages: msgs('room:big', 11, 15), presence: [] });
  await flush();
  assert.deepEqual(got, range(11, 15));
  assert.equal(ch.state, 'joining');
  assert.equal(ch.catchingUp, true);
  assert.equal(ch.seq, 15, 'seq is the last message delivered, not the reply top');

  // page 1: cut by the byte budget
  const h1 = lastOp(ws, 'history');
  assert.deepEqual({ ...h1, id: 0 }, { id: 0, op: 'history', channel: 'room:big', after: 15, limit: 200 });
  ws.serverSend(msg('room:big', 32)); // live, in the middle of the catch-up
  ws.reply(h1, { messages: msgs('room:big', 16, 22), more: true });
  await flush();
  assert.deepEqual(got, range(11, 22));

  // page 2: no `more`, but the reply's top (30) is not reached yet: go on
  const h2 = lastOp(ws, 'history');
  assert.equal(h2.after, 22);
  ws.serverSend(msg('room:big', 31)); // the same live message again
  ws.reply(h2, { messages: msgs('room:big', 23, 28) });
  await flush();

  // page 3: reaches past the top (31 was stored meanwhile), no `more`: done
  const h3 = lastOp(ws, 'history');
  assert.equal(h3.after, 28);
  assert.equal(ch.state, 'joining');
  ws.reply(h3, { messages: msgs('room:big', 29, 31) });
  await flush();
  assert.equal(ws.ops('history').length, 3);
  assert.deepEqual(got, range(11, 32), 'every message once, in seq order, the held ones last');
  assert.equal(ch.seq, 32);
  assert.equal(ch.state, 'joined');
  assert.equal(ch.catchingUp, false);
  assert.equal(joinedEvents.filter((e) => e.rejoin).length, 1);
  assert.deepEqual(states.slice(-2), ['joining', 'joined']);

  // live again
  ws.serverSend(msg('room:big', 33));
  ws.serverSend(msg('room:big', 32));
  assert.deepEqual(got, range(11, 33));
});

test('connection lost during the catch-up: held messages are dropped, the rejoin asks since the last delivered', async () => {
  const env = await connected();
  const { clock, WS, client } = env;
  const ch = client.channel('room:big');
  const got = [];
  ch.on('message', (m) => got.push(m.seq));
  const rj = await joinThenReconnect(env, 'room:big', 10);
  const ws = WS.last;
  ws.serverSend(msg('room:big', 40)); // held
  ws.reply(rj, { channel: 'room:big', seq: 39, epoch: 'e1', recovered: true, more: true, messages: msgs('room:big', 11, 14) });
  await flush();
  const h1 = lastOp(ws, 'history');
  ws.serverSend(msg('room:big', 41)); // held
  ws.reply(h1, { messages: msgs('room:big', 15, 20), more: true });
  await flush();
  const h2 = lastOp(ws, 'history');
  assert.equal(h2.after, 20);
  ws.serverClose(1006); // before the page arrives
  await flush();
  assert.deepEqual(got, range(11, 20), 'the held live messages were not delivered');
  assert.equal(ch.seq, 20);
  assert.equal(ch.catchingUp, false);
  ws.reply(h2, { messages: msgs('room:big', 21, 25) }); // a late page of the dead socket: ignored
  await flush();
  assert.deepEqual(got, range(11, 20));

  await clock.advance(1000);
  WS.last.serverWelcome();
  const rj2 = WS.last.ops('join')[0];
  assert.equal(rj2.since, 20, 'exact resume: since = the last message delivered');
  assert.equal(rj2.epoch, 'e1');
  WS.last.serverSend(msg('room:big', 42)); // held again
  WS.last.reply(rj2, { channel: 'room:big', seq: 41, epoch: 'e1', recovered: true, messages: msgs('room:big', 21, 41) });
  await flush();
  assert.deepEqual(got, range(11, 42));
  assert.equal(ch.state, 'joined');
  assert.equal(WS.last.ops('history').length, 0);
});

test('an error during the catch-up joins again with since; a reset releases held messages above its top', async () => {
  const env = await connected();
  const { clock, WS, client } = env;
  const ch = client.channel('room:big');
  const got = [];
  const resets = [];
  ch.on('message', (m) => got.push(m.seq));
  ch.on('reset', (e) => resets.push(e.seq));
  const rj = await joinThenReconnect(env, 'room:big', 10);
  const ws = WS.last;
  ws.reply(rj, { channel: 'room:big', seq: 30, epoch: 'e1', recovered: true, more: true, messages: msgs('room:big', 11, 12) });
  await flush();
  ws.serverSend(msg('room:big', 31)); // held
  ws.replyError(lastOp(ws, 'history'), 'unavailable');
  await flush();
  assert.equal(ch.state, 'joining');
  await clock.advance(1000);
  const rj2 = lastOp(ws, 'join');
  assert.notEqual(rj2.id, rj.id);
  assert.equal(rj2.since, 12);
  // meanwhile the channel's history was reset (new epoch)
  ws.reply(rj2, { channel: 'room:big', seq: 5, epoch: 'e2', recovered: false, messages: msgs('room:big', 4, 5) });
  await flush();
  assert.deepEqual(resets, [5]);
  assert.deepEqual(got, [11, 12, 31], 'the held message above the new top is delivered after the reset');
  assert.equal(ch.state, 'joined');
});

test('history() returns more; historyAfter() pages until done, or until onPage says stop', async () => {
  const { WS, client } = await connected();
  const ws = WS.last;
  const p = client.history('room:a', { before: 100, limit: 50 });
  ws.reply(lastOp(ws, 'history'), { messages: msgs('room:a', 90, 99), more: true });
  const page = await p;
  assert.equal(page.more, true);
  assert.deepEqual(page.messages.map((m) => m.seq), range(90, 99));
  assert.equal(page.messages[0].channel, 'room:a');
  const q = client.history('room:a', { after: 5 });
  ws.reply(lastOp(ws, 'history'), { messages: [] });
  assert.equal((await q).more, false);

  // all of them
  const all = client.historyAfter('room:a', 0, { limit: 500 });
  await flush();
  let h = lastOp(ws, 'history');
  assert.equal(h.limit, 200, 'limit is capped at 200');
  assert.equal(h.after, 0);
  ws.reply(h, { messages: msgs('room:a', 1, 3), more: true });
  await flush();
  h = lastOp(ws, 'history');
  assert.equal(h.after, 3);
  ws.reply(h, { messages: msgs('room:a', 4, 6) });
  const r = await all;
  assert.deepEqual(r.messages.map((m) => m.seq), range(1, 6));
  assert.equal(r.last, 6);
  assert.equal(r.pages, 2);

  // until: continue while below it even without `more`; an empty page ends it
  const pagesSeen = [];
  const until = client.historyAfter('room:a', 10, { until: 50, onPage: (m) => { pagesSeen.push(m.map((x) => x.seq)); } });
  await flush();
  ws.reply(lastOp(ws, 'history'), { messages: msgs('room:a', 11, 20) });
  await flush();
  assert.equal(lastOp(ws, 'history').after, 20);
  ws.reply(lastOp(ws, 'history'), { messages: [] });
  const ru = await until;
  assert.deepEqual(pagesSeen, [range(11, 20), []]);
  assert.deepEqual(ru.messages, []);
  assert.equal(ru.last, 20);

  // onPage returning false stops
  const stop = client.historyAfter('room:a', 0, { onPage: () => false });
  await flush();
  const before = ws.ops('history').length;
  ws.reply(lastOp(ws, 'history'), { messages: msgs('room:a', 1, 2), more: true });
  const rs = await stop;
  assert.equal(rs.stopped, true);
  assert.equal(ws.ops('history').length, before);
});

test('presence(): one page with after/limit; presenceAll() pages through, bounded by maxPages', async () => {
  const { WS, client } = await connected();
  const ws = WS.last;
  const one = client.presence('room:a', { after: 'abc', limit: 50 });
  const f = lastOp(ws, 'presence');
  assert.deepEqual({ ...f, id: 0 }, { id: 0, op: 'presence', channel: 'room:a', after: 'abc', limit: 50 });
  ws.reply(f, { members: users(1, 50), count: 120, next: 'def' });
  assert.equal((await one).next, 'def');
  // the channel's method too, without options
  client.channel('room:a').presence();
  assert.deepEqual({ ...lastOp(ws, 'presence'), id: 0 }, { id: 0, op: 'presence', channel: 'room:a' });

  const all = client.presenceAll('room:a');
  await flush();
  let pf = lastOp(ws, 'presence');
  assert.equal(pf.limit, 500);
  assert.equal(pf.after, undefined);
  ws.reply(pf, { members: users(1, 500), count: 700, next: 'c1' });
  await flush();
  pf = lastOp(ws, 'presence');
  assert.equal(pf.after, 'c1');
  ws.reply(pf, { members: users(501, 700), count: 700 });
  const r = await all;
  assert.equal(r.members.length, 700);
  assert.equal(r.count, 700);
  assert.equal(r.complete, true);
  assert.equal(r.pages, 2);

  // bounded: a server that always has a next page
  const bounded = client.presenceAll('room:huge', { limit: 10, maxPages: 3 });
  for (let i = 0; i < 3; i++) {
    await flush();
    const x = lastOp(ws, 'presence');
    ws.reply(x, { members: users(i * 10 + 1, i * 10 + 10), count: 99999, next: `n${i}` });
  }
  const rb = await bounded;
  assert.equal(rb.complete, false);
  assert.equal(rb.next, 'n2');
  assert.equal(rb.pages, 3);
  assert.equal(rb.members.length, 30);
  await flush();
  assert.equal(ws.ops('presence').filter((x) => x.channel === 'room:huge').length, 3);
});

test('small rooms: members as before, presenceCount from presence_count and events', async () => {
  const { WS, client } = await connected();
  const ws = WS.last;
  const dm = client.channel('dm:42,7');
  const events = [];
  dm.on('presence', (e) => events.push(e));
  const j = dm.join();
  ws.reply(ws.ops('join')[0], { channel: 'dm:42,7', seq: 0, epoch: 'e', messages: [], presence: [user(42)], presence_count: 1 });
  await j;
  assert.equal(dm.presenceCount, 1);
  assert.equal(dm.presenceLarge, false);
  assert.equal(events[0].initial, true);
  assert.equal(events[0].count, 1);
  ws.serverSend({ ev: 'presence', channel: 'dm:42,7', joined: [{ id: '7', name: 'bob' }], left: [], count: 2 });
  assert.equal(dm.members.has('7'), true);
  assert.equal(dm.presenceCount, 2);
  assert.equal(events[1].count, 2);
  assert.equal(events[1].large, false);
  ws.serverSend({ ev: 'presence', channel: 'dm:42,7', joined: [], left: [{ id: '7', name: 'bob' }], count: 1 });
  assert.equal(dm.members.has('7'), false);
  assert.equal(dm.presenceCount, 1);
  // a server without counts: the member list's size
  ws.serverSend({ ev: 'presence', channel: 'dm:42,7', joined: [{ id: '7', name: 'bob' }], left: [] });
  assert.equal(dm.presenceCount, 2);
  assert.equal(ws.ops('presence').length, 0, 'no presence pages for a small room');
});

test('large room: count-only events; diffs again after them re-read the member list, then apply the diffs', async () => {
  const { WS, client } = await connected();
  const ws = WS.last;
  const ch = client.channel('room:stage');
  const events = [];
  ch.on('presence', (e) => events.push(e));
  const j = ch.join();
  ws.reply(ws.ops('join')[0], { channel: 'room:stage', seq: 0, epoch: 'e', messages: [], presence: users(1, 100), presence_count: 1500 });
  await j;
  assert.equal(ch.presenceCount, 1500);
  assert.equal(ch.presenceLarge, true);
  assert.equal(ch.members.size, 100, 'the first members, as the reply listed them');
  assert.equal(events[0].large, true);
  assert.equal(ws.ops('presence').length, 0, 'above 1,000 the list is not read');

  ws.serverSend({ ev: 'presence', channel: 'room:stage', count: 1400 });
  assert.equal(ch.presenceCount, 1400);
  assert.equal(ch.presenceLarge, true);
  assert.equal(events[1].count, 1400);
  assert.equal(events[1].large, true);
  assert.equal(ws.ops('presence').length, 0);

  // back below the threshold: diffs again. The list is re-read first.
  ws.serverSend({ ev: 'presence', channel: 'room:stage', joined: [user(2001)], left: [user(5)], count: 1000 });
  assert.equal(ch.presenceCount, 1000);
  const p1 = lastOp(ws, 'presence');
  assert.deepEqual({ ...p1, id: 0 }, { id: 0, op: 'presence', channel: 'room:stage', limit: 500 });
  assert.equal(ch.members.has('2001'), false, 'diffs wait for the list');
  ws.serverSend({ ev: 'presence', channel: 'room:stage', joined: [user(2002)], left: [user(600)], count: 1000 });
  ws.reply(p1, { members: [...users(1, 4), ...users(6, 501)], count: 1000, next: 'cur-1' });
  await flush();
  const p2 = lastOp(ws, 'presence');
  assert.equal(p2.after, 'cur-1');
  assert.equal(p2.limit, 500);
  assert.equal(ch.presenceLarge, true, 'not complete before the last page');
  // the snapshot already has 2001 joined and 5 left; 600 is still there
  ws.reply(p2, { members: [...users(502, 1000), user(2001)], count: 1000 });
  await flush();
  assert.equal(ch.presenceLarge, false);
  assert.equal(ch.members.has('5'), false);
  assert.equal(ch.members.has('600'), false, 'the buffered diff applied after the list');
  assert.equal(ch.members.has('2001'), true);
  assert.equal(ch.members.has('2002'), true);
  assert.equal(ch.members.size, 1000);
  assert.equal(ch.presenceCount, 1000);
  const reread = events.find((e) => e.reread);
  assert.ok(reread);
  assert.equal(reread.large, false);
  assert.equal(reread.members.length, 1000);

  // from now on, diffs apply directly
  ws.serverSend({ ev: 'presence', channel: 'room:stage', joined: [], left: [user(1)], count: 999 });
  assert.equal(ch.members.has('1'), false);
  assert.equal(ch.presenceCount, 999);
  assert.equal(ws.ops('presence').length, 2);
});

test('large room: join with up to 1,000 present reads the whole list; a count-only event cancels a re-read', async () => {
  const { clock, WS, client } = await connected();
  const ws = WS.last;
  const ch = client.channel('room:hall');
  const j = ch.join();
  ws.reply(ws.ops('join')[0], { channel: 'room:hall', seq: 0, epoch: 'e', messages: [], presence: users(1, 100), presence_count: 150 });
  await j;
  assert.equal(ch.presenceLarge, true);
  const p = lastOp(ws, 'presence');
  assert.equal(p.limit, 500);
  ws.reply(p, { members: users(1, 150), count: 150 });
  await flush();
  assert.equal(ch.presenceLarge, false);
  assert.equal(ch.members.size, 150);

  // the room grows past 1,000 while a re-read runs: the re-read's result is not trusted
  ws.serverSend({ ev: 'presence', channel: 'room:hall', count: 1200 });
  ws.serverSend({ ev: 'presence', channel: 'room:hall', joined: [user(3000)], left: [], count: 1000 });
  const p2 = lastOp(ws, 'presence');
  assert.notEqual(p2.id, p.id);
  ws.serverSend({ ev: 'presence', channel: 'room:hall', count: 1100 });
  ws.reply(p2, { members: users(1, 999).concat([user(3000)]), count: 1000 });
  await flush();
  assert.equal(ch.presenceLarge, true);
  assert.equal(ch.presenceCount, 1100);

  // a failed re-read keeps the list marked large and is tried again later
  ws.serverSend({ ev: 'presence', channel: 'room:hall', joined: [user(3001)], left: [], count: 1000 });
  ws.replyError(lastOp(ws, 'presence'), 'unavailable');
  await flush();
  assert.equal(ch.presenceLarge, true);
  assert.equal(ch.members.has('3001'), true, 'the diff still applies to what is known');
  const n = ws.ops('presence').length;
  ws.serverSend({ ev: 'presence', channel: 'room:hall', joined: [user(3002)], left: [], count: 1000 });
  assert.equal(ws.ops('presence').length, n, 'not again at once');
  await clock.advance(5000);
  ws.serverSend({ ev: 'presence', channel: 'room:hall', joined: [user(3003)], left: [], count: 1000 });
  assert.equal(ws.ops('presence').length, n + 1);
  ws.reply(lastOp(ws, 'presence'), { members: users(1, 997).concat([user(3001), user(3002)]), count: 999 });
  await flush();
  assert.equal(ch.presenceLarge, false);
  assert.equal(ch.members.size, 1000);
  assert.equal(ch.presenceCount, 1000, 'the count of the newest diff, not of the snapshot');
  // leaving forgets it all
  const left = ch.leave();
  ws.reply(lastOp(ws, 'leave'), {});
  await left;
  assert.equal(ch.presenceCount, 0);
  assert.equal(ch.members.size, 0);
});
