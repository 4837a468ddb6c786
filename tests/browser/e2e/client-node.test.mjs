// chat-client.js in node against the real server: token auth (query and first frame),
// publish/ack, dedupe by client_id, recovery with `since` after a dropped connection,
// scroll-back in the chat page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { ChatClient } from '../../../static/chat-client.js';
import { skipReason, startServer, launchBrowser, uname, registerAndLogin, watchPage, openChat, screenshot } from './helpers.mjs';

const skip = skipReason() || false;
let server;

before(async () => { if (!skip) server = await startServer(); });
after(async () => { if (server) await server.stop(); });

async function register(name) {
  const r = await fetch(`${server.base}/api/register`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name, password: 'pass-word-123' }),
  });
  assert.equal(r.ok, true, `register ${r.status}`);
  return r.json();
}

function client(token, extra = {}) {
  return new ChatClient({ url: `${server.base.replace('http', 'ws')}/ws`, token, WebSocket, backoff: { baseMs: 100, maxMs: 1000 }, ...extra });
}

test('node client: auth, publish, duplicate client_id, recovery after a drop', { skip, timeout: 60000 }, async () => {
  const a = await register(uname('na'));
  const b = await register(uname('nb'));
  const ca = client(a.token);
  const cb = client(b.token, { tokenMode: 'frame' });
  try {
    const wa = await ca.connect();
    const wb = await cb.connect();
    assert.equal(wa.user.name, a.user.name);
    assert.equal(wb.user.name, b.user.name);
    assert.ok(wa.heartbeat_s > 0);
    const room = `room:node-${Math.random().toString(36).slice(2, 7)}`;
    const got = [];
    cb.channel(room).on('message', (m) => got.push(m.data.text));
    await ca.join(room);
    const jb = await cb.join(room);
    assert.deepEqual(jb.messages, []);
    const r1 = await ca.publish(room, { type: 'text', text: 'one' }, { clientId: 'fixed-1' });
    const r2 = await ca.publish(room, { type: 'text', text: 'one again' }, { clientId: 'fixed-1' });
    assert.equal(r2.seq, r1.seq, 'same client_id: same seq');
    assert.equal(r2.duplicate, true);
    await waitFor(() => got.length === 1);
    // b loses its connection; a keeps publishing; b gets everything once after rejoining
    cb.drop();
    for (let i = 0; i < 5; i++) await ca.publish(room, { type: 'text', text: `m${i}` });
    await cb.ready();
    await waitFor(() => got.length === 6);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(got, ['one', 'm0', 'm1', 'm2', 'm3', 'm4']);
    // history with before
    const h = await cb.history(room, { before: cb.channel(room).seq, limit: 2 });
    assert.deepEqual(h.messages.map((m) => m.data.text), ['m2', 'm3']);
    // errors are ChatErrors with the protocol's code
    await assert.rejects(ca.publish('ticker:ACME', { price: 1 }), (e) => e.code === 'forbidden' || e.code === 'unauthorized');
    await assert.rejects(ca.request('history', { channel: 'nonsense' }), (e) => e.code === 'bad_request');
    const pong = await ca.ping();
    assert.equal(typeof pong.ts, 'number');
  } finally {
    ca.close();
    cb.close();
  }
});

test('chat page: scroll back through history', { skip, timeout: 90000 }, async () => {
  const browser = await launchBrowser();
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  try {
    const u = await registerAndLogin(ctx, server.base, uname('hist'));
    const name = `hist-${Math.random().toString(36).slice(2, 7)}`;
    const c = client(u.token);
    await c.connect();
    await c.join(`room:${name}`);
    for (let i = 1; i <= 130; i++) await c.publish(`room:${name}`, { type: 'text', text: `line ${i}` });
    c.close();
    const page = await ctx.newPage();
    const problems = watchPage(page, 'H');
    await openChat(page, server.base);
    await page.locator('#room-list button', { hasText: name }).click();
    await page.locator('#messages .msg-text', { hasText: 'line 130' }).waitFor();
    const first = await page.locator('#messages .msg-row').count();
    assert.ok(first >= 50 && first < 130, `first page: ${first}`);
    for (let i = 0; i < 10; i++) {
      await page.locator('#messages').evaluate((el) => { el.scrollTop = 0; });
      await page.waitForTimeout(400);
      if ((await page.locator('#messages .msg-row').count()) === 130) break;
    }
    const texts = await page.$$eval('#messages .msg-text', (els) => els.map((e) => e.textContent));
    assert.deepEqual(texts, Array.from({ length: 130 }, (_, i) => `line ${i + 1}`));
    await page.locator('.history-top', { hasText: 'beginning' }).waitFor();
    await screenshot(page, 'chat-history');
    assert.deepEqual(problems, []);
  } finally {
    await ctx.close();
    await browser.close();
  }
});

async function waitFor(cond, ms = 10000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}
