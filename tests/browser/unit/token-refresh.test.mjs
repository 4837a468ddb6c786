// Unit tests of the token refresh of static/chat-client.js (fake WebSocket, manual clock).
// Run: node --test tests/browser/unit/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient } from '../../../static/chat-client.js';
import { FakeClock, flush, makeFakeWebSocket } from './fakes.mjs';

/** An unsigned JWT-shaped token expiring at `exp` (seconds); the client only reads `exp`. */
const jwt = (exp, n = 0) => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'HS256' })}.${b64({ sub: '42', exp, n })}.sig`;
};

/** Advance the clock in steps, answering the client's pings (a live server). */
async function live(clock, ws, ms) {
  const answered = new Set();
  for (let t = 0; t < ms; t += 1000) {
    await clock.advance(Math.min(1000, ms - t));
    for (const p of ws.ops('ping')) if (!answered.has(p.id)) { answered.add(p.id); ws.reply(p, { ts: clock.now() }); }
  }
}

async function connectedWith(tokens) {
  const clock = new FakeClock();
  const WS = makeFakeWebSocket();
  let calls = 0;
  const client = new ChatClient({
    url: 'ws://test/ws', WebSocket: WS, now: clock.now, timers: clock.timersApi, random: () => 0.5,
    token: async () => tokens(calls++, clock.now()),
  });
  const p = client.connect();
  await flush();
  WS.last.serverWelcome();
  await p;
  return { clock, WS, client, calls: () => calls };
}

test('tokenExpiry reads exp, or null for anything else', () => {
  assert.equal(ChatClient.tokenExpiry(jwt(1234)), 1234);
  assert.equal(ChatClient.tokenExpiry('not-a-token'), null);
  assert.equal(ChatClient.tokenExpiry(`a.${Buffer.from('{"sub":"1"}').toString('base64url')}.c`), null);
});

test('a token about to expire is replaced with auth on the open connection', async () => {
  const { clock, WS, client } = await connectedWith((i, now) => jwt(Math.floor(now / 1000) + 300, i));
  const ws = WS.last;
  // 300 s of life: refreshed a minute before the end, not earlier.
  await live(clock, ws, 239_000);
  assert.equal(ws.ops('auth').length, 0);
  await live(clock, ws, 2_000);
  const [auth] = ws.ops('auth');
  assert.ok(auth, 'auth sent before expiry');
  assert.equal(ChatClient.tokenExpiry(auth.token) > clock.now() / 1000 + 250, true);
  const events = [];
  client.on('token', (e) => events.push(e));
  ws.reply(auth, {});
  await flush();
  assert.equal(events.length, 1);
  assert.equal(client.state, 'open');
  // and the next refresh is scheduled from the new token's expiry
  await live(clock, ws, 241_000);
  assert.equal(WS.last, ws, 'still the same connection');
  assert.equal(ws.ops('auth').length, 2);
});

test('closed with 4001 while open: reconnects with a fresh token instead of giving up', async () => {
  const { clock, WS, client, calls } = await connectedWith((i, now) => jwt(Math.floor(now / 1000) + 3600, i));
  const first = WS.last;
  first.serverClose(4001, 'token expired');
  assert.equal(client.state, 'reconnecting');
  await clock.advance(60_000);
  assert.notEqual(WS.last, first, 'a new connection');
  assert.ok(calls() >= 2, 'the token function was asked again');
  // A static token cannot be refreshed: 4001 stops the client.
  const clock2 = new FakeClock();
  const WS2 = makeFakeWebSocket();
  const c2 = new ChatClient({ url: 'ws://test/ws', WebSocket: WS2, now: clock2.now, timers: clock2.timersApi, token: 'static' });
  c2.on('error', () => {});
  const p = c2.connect();
  await flush();
  WS2.last.serverWelcome();
  await p;
  WS2.last.serverClose(4001, 'token expired');
  assert.equal(c2.state, 'closed');
});
