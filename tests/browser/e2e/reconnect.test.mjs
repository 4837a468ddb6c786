// The server restarts while a user is typing and sending: after the reconnection every
// message is shown exactly once, on the sender's and on the reader's screen.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { skipReason, startServer, launchBrowser, uname, registerAndLogin, watchPage, screenshot, failureShot, openChat, messageTexts, freshDataDir } from './helpers.mjs';

const skip = skipReason() || false;
let server;
let browser;
after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

test('server restart while typing and sending: nothing lost, nothing doubled', { skip, timeout: 180000 }, async () => {
  const dataDir = freshDataDir();
  server = await startServer({ dataDir });
  const { port } = server;
  browser = await launchBrowser();
  const ctxA = await browser.newContext();
  const ctxB = await browser.newContext();
  await registerAndLogin(ctxA, server.base, uname('ann'));
  const bob = await registerAndLogin(ctxB, server.base, uname('ben'));
  const pageA = await ctxA.newPage();
  const pageB = await ctxB.newPage();
  const problems = [...watchPage(pageA, 'A'), ...watchPage(pageB, 'B')];
  const sendA = async (text) => {
    await pageA.locator('#composer-input').fill(text);
    await pageA.locator('#composer-input').press('Enter');
  };
  try {
    await openChat(pageA, server.base);
    await openChat(pageB, server.base);
    await pageA.locator('#member-list .member', { hasText: bob.name }).waitFor({ timeout: 10000 });
    for (const i of [1, 2, 3]) await sendA(`before ${i}`);
    await pageB.locator('#messages .msg-text', { hasText: 'before 3' }).waitFor({ timeout: 5000 });

    // typing, a send, and the server goes down in the middle of it
    await pageA.locator('#composer-input').click();
    await pageA.keyboard.type('during restart', { delay: 20 });
    const stopping = server.stop();
    await pageA.keyboard.press('Enter');
    await stopping;
    await pageA.locator('#conn[data-state="reconnecting"]').waitFor({ timeout: 15000 });
    await pageB.locator('#conn[data-state="reconnecting"]').waitFor({ timeout: 15000 });
    // sent while the server is down: queued
    await sendA('while down 1');
    await sendA('while down 2');
    await pageA.locator('#messages .msg-row.pending').first().waitFor();
    await screenshot(pageA, 'chat-reconnecting');

    // same data dir, same port
    server = await startServer({ dataDir, port });
    await pageA.locator('#conn[data-state="open"]').waitFor({ timeout: 45000 });
    await pageB.locator('#conn[data-state="open"]').waitFor({ timeout: 45000 });
    for (const i of [1, 2]) await sendA(`after ${i}`);
    await pageB.locator('#composer-input').fill('ben is back');
    await pageB.locator('#composer-input').press('Enter');

    const expected = ['before 1', 'before 2', 'before 3', 'during restart', 'while down 1', 'while down 2', 'after 1', 'after 2', 'ben is back'];
    for (const page of [pageA, pageB]) {
      await page.waitForFunction((exp) => {
        const texts = [...document.querySelectorAll('#messages .msg-row .msg-text')].map((e) => e.textContent);
        return exp.every((t) => texts.includes(t)) && !document.querySelector('#messages .msg-row.pending');
      }, expected, { timeout: 30000 });
    }
    await pageA.waitForTimeout(1500); // late duplicates would show up now
    for (const page of [pageA, pageB]) {
      const texts = await messageTexts(page);
      for (const t of expected) assert.equal(texts.filter((x) => x === t).length, 1, `"${t}" exactly once in ${JSON.stringify(texts)}`);
      // in seq order: the sender's own messages keep their order
      const order = expected.slice(0, 8).map((t) => texts.indexOf(t));
      assert.deepEqual([...order].sort((a, b) => a - b), order, `order ${JSON.stringify(texts)}`);
      const seqs = await page.$$eval('#messages .msg-row', (rows) => rows.map((r) => Number(r.dataset.seq)));
      assert.equal(new Set(seqs).size, seqs.length, 'no seq twice');
    }
    // a reload shows the same history, once each
    await pageB.reload();
    await openChat(pageB, server.base);
    await pageB.locator('#messages .msg-text', { hasText: 'ben is back' }).waitFor();
    const reloaded = await messageTexts(pageB);
    for (const t of expected) assert.equal(reloaded.filter((x) => x === t).length, 1, `"${t}" once after reload`);
    assert.deepEqual(problems, []);
  } catch (err) {
    await failureShot(pageA, 'failure-reconnect-a');
    await failureShot(pageB, 'failure-reconnect-b');
    err.message += `\n--- server log tail ---\n${server.log().slice(-2000)}`;
    throw err;
  } finally {
    await ctxA.close();
    await ctxB.close();
  }
});
