// The chat page goes offline in a room of large messages; while it is away more large
// messages are published, more than one reply can carry (the server's byte budget,
// 1 MiB by default). Back online, the client fetches the rest with `history after=`
// pages while live messages keep coming: every message shows exactly once, in order.
// And the members panel of a large room (count-only presence events): "N online".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { skipReason, startServer, launchBrowser, uname, registerAndLogin, watchPage, failureShot, openChat } from './helpers.mjs';

const skip = skipReason() || false;
let server;
let browser;
before(async () => {
  if (skip) return;
  server = await startServer();
  browser = await launchBrowser();
});
after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

const ROOM = 'room:lobby';
const FILL = 'lorem ipsum dolor sit amet '.repeat(2222); // ~60 KB
const label = (i) => `big-${String(i).padStart(2, '0')}`;

test('offline in a room of 60 KB messages: back online, each message once and in order', { skip, timeout: 120000 }, async () => {
  const { base } = server;
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const page = await ctx.newPage();
  const problems = watchPage(page, 'R');

  // a second user publishes over HTTP
  const reg = await fetch(`${base}/api/register`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: uname('pub'), password: 'pass-word-123' }),
  });
  assert.equal(reg.ok, true, `register: ${reg.status}`);
  const { token } = await reg.json();
  const post = async (path, body) => {
    const r = await fetch(`${base}${path}`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` }, body: JSON.stringify(body),
    });
    assert.equal(r.ok, true, `${path}: ${r.status} ${r.ok ? '' : await r.text()}`);
    return r.json();
  };
  const publishBig = async (from, to) => {
    const items = [];
    for (let i = from; i <= to; i++) items.push({ channel: ROOM, data: { type: 'text', text: `${label(i)} ${FILL}` } });
    const res = await post('/api/publish/batch', items);
    assert.deepEqual(res.map((r) => r.seq), items.map((_, k) => from + k));
  };
  const rows = () => page.$$eval('#messages .msg-row', (els) => els.map((r) => ({
    seq: Number(r.dataset.seq), text: (r.querySelector('.msg-text') || {}).textContent?.split(' ')[0] || '',
  })));

  try {
    await publishBig(1, 40);
    await registerAndLogin(ctx, base, uname('rd'));
    await openChat(page, base);
    await page.locator('#messages .msg-text', { hasText: label(40) }).waitFor({ timeout: 10000 });
    await page.evaluate((room) => {
      window.joins = [];
      window.chatClient.on('joined', (e) => { if (e.channel === room) window.joins.push({ rejoin: e.rejoin, more: !!e.reply.more }); });
    }, ROOM);
    const shownFirst = await rows();
    assert.ok(shownFirst.length < 40, `the first join reply is cut by the byte budget (${shownFirst.length} shown)`);
    assert.equal(await page.locator('#member-count').textContent(), '1');

    // offline: the socket dies and cannot come back
    await ctx.setOffline(true);
    await page.evaluate(() => window.chatClient.drop());
    await page.locator('#conn[data-state="reconnecting"]').waitFor({ timeout: 10000 });
    await publishBig(41, 80); // 2.4 MB missed: more than one reply holds

    // online again, with live messages arriving while the page catches up
    await ctx.setOffline(false);
    const live = (async () => {
      for (let k = 1; k <= 5; k++) {
        await post('/api/publish', { channel: ROOM, data: { type: 'text', text: `live-${k}` } });
        await new Promise((r) => setTimeout(r, 40));
      }
    })();
    await page.locator('#conn[data-state="open"]').waitFor({ timeout: 15000 });
    await live;
    await page.waitForFunction((room) => {
      const texts = [...document.querySelectorAll('#messages .msg-row .msg-text')].map((e) => e.textContent.split(' ')[0]);
      return texts.includes('big-80') && texts.includes('live-5') && window.chatClient.channel(room).state === 'joined';
    }, ROOM, { timeout: 15000 });
    await page.waitForTimeout(800); // late duplicates would show up now

    const joins = await page.evaluate(() => window.joins);
    assert.ok(joins.some((j) => j.rejoin && j.more), `a rejoin with more:true was caught up: ${JSON.stringify(joins)}`);
    const expected = (seq) => (seq <= 80 ? label(seq) : `live-${seq - 80}`);
    const check = (shown, from) => {
      const seqs = shown.map((r) => r.seq);
      assert.deepEqual(seqs, Array.from({ length: 85 - from + 1 }, (_, k) => from + k), 'each seq once, in order, no gap');
      for (const r of shown) assert.equal(r.text, expected(r.seq), `row of seq ${r.seq}`);
    };
    const shown = await rows();
    check(shown, shown[0].seq);
    assert.ok(shown[0].seq <= 41, `everything missed is shown (from ${shown[0].seq})`);

    // scroll back to the start: older pages are cut by the byte budget too (`more`)
    await page.waitForFunction(() => {
      const box = document.getElementById('messages');
      box.scrollTop = 0;
      box.dispatchEvent(new Event('scroll'));
      return /beginning/.test(document.querySelector('#messages .history-top').textContent);
    }, null, { timeout: 20000, polling: 250 });
    check(await rows(), 1);
    assert.deepEqual(problems, []);
  } catch (err) {
    await failureShot(page, 'failure-catchup');
    err.message += `\n--- server log tail ---\n${server.log().slice(-2000)}`;
    throw err;
  } finally {
    await ctx.close();
  }
});

test('members panel: a large room shows "N online" and the first members, a small one everyone', { skip, timeout: 60000 }, async () => {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const page = await ctx.newPage();
  const problems = watchPage(page, 'M');
  // a frame as if the server had sent it
  const serverFrame = (frame) => page.evaluate((f) => window.chatClient.ws.onmessage({ data: JSON.stringify(f) }), frame);
  try {
    const me = await registerAndLogin(ctx, server.base, uname('mb'));
    await openChat(page, server.base);
    await page.locator('#member-list .member', { hasText: me.name }).waitFor({ timeout: 10000 });
    await page.waitForFunction((room) => window.chatClient.channel(room).state === 'joined', ROOM);
    assert.equal(await page.locator('#member-count').textContent(), '1');

    // more than 1,000 present: presence events carry only the count
    await serverFrame({ ev: 'presence', channel: ROOM, count: 15230 });
    await page.locator('#member-count', { hasText: '15,230' }).waitFor({ timeout: 5000 });
    // the first members are read with a `presence` page (here: only this user)
    await page.locator('#member-list .member-summary', { hasText: '15,230 online · showing 1' }).waitFor({ timeout: 5000 });
    await page.locator('#member-list .member', { hasText: me.name }).waitFor();
    assert.equal(await page.evaluate((room) => window.chatClient.channel(room).presenceLarge, ROOM), true);

    // back to diffs: the client re-reads the member list, the panel is complete again
    await serverFrame({ ev: 'presence', channel: ROOM, joined: [], left: [], count: 1 });
    await page.waitForFunction((room) => window.chatClient.channel(room).presenceLarge === false, ROOM, { timeout: 5000 });
    await page.locator('#member-count', { hasText: /^1$/ }).waitFor({ timeout: 5000 });
    assert.equal(await page.locator('#member-list .member-summary').count(), 0);
    assert.deepEqual(await page.$$eval('#member-list .member .name', (els) => els.map((e) => e.textContent)), [me.name]);
    assert.deepEqual(problems, []);
  } catch (err) {
    await failureShot(page, 'failure-members-large');
    throw err;
  } finally {
    await ctx.close();
  }
});
