// Two users chat in a room and in a DM: presence, typing, messages, XSS safety, edits,
// image uploads, login/registration, private rooms.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  skipReason, startServer, launchBrowser, uname, registerAndLogin, watchPage, screenshot, failureShot, makePng, openChat, messageTexts,
} from './helpers.mjs';

const skip = skipReason();
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

test('two users: room, presence, typing, DM, XSS shown as text, edit', { skip: skip || false, timeout: 180000 }, async () => {
  const ctxA = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const ctxB = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const alice = await registerAndLogin(ctxA, server.base, uname('alice'));
  const bob = await registerAndLogin(ctxB, server.base, uname('bob'));
  const pageA = await ctxA.newPage();
  const pageB = await ctxB.newPage();
  const problems = [...watchPage(pageA, 'A'), ...watchPage(pageB, 'B')];
  try {
    await openChat(pageA, server.base);
    await openChat(pageB, server.base);
    // both land in #lobby
    await assertTitle(pageA, '#lobby');
    await assertTitle(pageB, '#lobby');

    // presence: each sees the other online
    await pageA.locator('#member-list .member', { hasText: bob.name }).waitFor({ timeout: 10000 });
    await pageB.locator('#member-list .member', { hasText: alice.name }).waitFor({ timeout: 10000 });

    // typing: bob sees "alice is typing"
    await pageA.locator('#composer-input').click();
    await pageA.keyboard.type('hello bo', { delay: 30 });
    await pageB.locator('#typing', { hasText: `${alice.name} is typing` }).waitFor({ timeout: 5000 });
    await pageA.keyboard.type('b');
    await pageA.keyboard.press('Enter');
    await pageB.locator('#messages .msg-text', { hasText: 'hello bob' }).waitFor({ timeout: 5000 });
    assert.equal(await pageA.locator('#composer-input').inputValue(), '');

    // bob answers; alice sees it and his typing
    await pageB.locator('#composer-input').fill('hi alice!');
    await pageB.locator('#composer-input').press('Enter');
    await pageA.locator('#messages .msg-text', { hasText: 'hi alice!' }).waitFor({ timeout: 5000 });

    // a message that would be an XSS if rendered as HTML is shown as text
    const evil = '<img src=x onerror=alert(1)>';
    await pageA.locator('#composer-input').fill(evil);
    await pageA.locator('#composer-input').press('Enter');
    await pageB.locator('#messages .msg-text', { hasText: evil }).waitFor({ timeout: 5000 });
    assert.equal(await pageB.locator('#messages img[src="x"]').count(), 0);
    assert.equal(await pageA.locator('#messages img[src="x"]').count(), 0);
    await pageB.waitForTimeout(500);
    assert.deepEqual(pageA.dialogs, []);
    assert.deepEqual(pageB.dialogs, []);

    // each message exactly once on both sides
    for (const p of [pageA, pageB]) {
      const texts = await messageTexts(p);
      for (const t of ['hello bob', 'hi alice!', evil]) assert.equal(texts.filter((x) => x === t).length, 1, `${t} once in ${texts}`);
    }

    // edit own message with ArrowUp in the empty composer
    await pageB.locator('#composer-input').click();
    await pageB.keyboard.press('ArrowUp');
    const edit = pageB.locator('#messages textarea[aria-label="Edit message"]');
    await edit.waitFor();
    await edit.fill('hi alice! (edited text)');
    await edit.press('Enter');
    await pageA.locator('#messages .msg-text', { hasText: 'hi alice! (edited text)' }).waitFor({ timeout: 5000 });
    await pageA.locator('#messages .msg-edited').first().waitFor();
    // delete: alice sends a typo and deletes it (two clicks); bob sees it go
    await pageA.locator('#composer-input').fill('tpyo');
    await pageA.locator('#composer-input').press('Enter');
    await pageB.locator('#messages .msg-text', { hasText: 'tpyo' }).waitFor({ timeout: 5000 });
    const typo = pageA.locator('#messages .msg-row', { hasText: 'tpyo' });
    await typo.hover();
    await typo.locator('.msg-actions button', { hasText: 'Delete' }).click();
    await typo.locator('.msg-actions button', { hasText: 'Delete for everyone?' }).click();
    await pageB.locator('#messages .msg-row.deleted, #messages .msg-row:has(.msg.deleted)', { hasText: 'deleted' }).waitFor({ timeout: 5000 });
    assert.equal((await messageTexts(pageB)).includes('tpyo'), false);

    await pageA.locator('#messages').evaluate((el) => { el.scrollTop = el.scrollHeight; });
    await screenshot(pageA, 'chat');

    // direct message: alice finds bob and writes to him
    await pageA.locator('#user-search').fill(bob.name);
    await pageA.locator('#user-results button', { hasText: bob.name }).click();
    await assertTitle(pageA, `@${bob.name}`);
    await pageA.locator('#composer-input').fill('psst, private');
    await pageA.locator('#composer-input').press('Enter');
    await pageA.locator('#messages .msg-text', { hasText: 'psst, private' }).waitFor();
    // bob gets the DM in his list (with an unread badge) and opens it
    const dmButton = pageB.locator('#dm-list button', { hasText: alice.name });
    await dmButton.waitFor({ timeout: 20000 });
    await dmButton.click();
    await assertTitle(pageB, `@${alice.name}`);
    await pageB.locator('#messages .msg-text', { hasText: 'psst, private' }).waitFor({ timeout: 5000 });
    // typing and presence in the DM
    await pageA.locator('#member-list .member', { hasText: bob.name }).waitFor({ timeout: 10000 });
    await pageB.locator('#composer-input').click();
    await pageB.keyboard.type('got it', { delay: 30 });
    await pageA.locator('#typing', { hasText: `${bob.name} is typing` }).waitFor({ timeout: 5000 });
    await pageB.keyboard.press('Enter');
    await pageA.locator('#messages .msg-text', { hasText: 'got it' }).waitFor({ timeout: 5000 });
    // the DM is not visible in the lobby
    await pageB.locator('#room-list button', { hasText: 'lobby' }).click();
    assert.equal((await messageTexts(pageB)).includes('psst, private'), false);
    await screenshot(pageB, 'chat-dm');

    // phone-sized screen: the channel list is a drawer
    const phone = await ctxA.newPage({ viewport: { width: 390, height: 760 } });
    await phone.setViewportSize({ width: 390, height: 760 });
    await openChat(phone, server.base);
    await phone.locator('#messages .msg-row').first().waitFor();
    assert.equal(await phone.locator('#sidebar').evaluate((e) => e.getBoundingClientRect().right <= 0), true);
    await screenshot(phone, 'chat-mobile');
    await phone.locator('#menu-btn').click();
    await phone.locator('#room-list button', { hasText: 'lobby' }).waitFor({ state: 'visible' });
    await phone.waitForTimeout(300);
    assert.equal(await phone.locator('#sidebar').evaluate((e) => e.getBoundingClientRect().left >= 0), true);
    await phone.keyboard.press('Escape');
    await phone.close();

    assert.deepEqual(problems, []);
  } catch (err) {
    await failureShot(pageA, 'failure-chat-a');
    await failureShot(pageB, 'failure-chat-b');
    err.message += `\n--- server log tail ---\n${server.log().slice(-2000)}`;
    throw err;
  } finally {
    await ctxA.close();
    await ctxB.close();
  }
});

test('login and registration through the form; private room invitation', { skip: skip || false, timeout: 120000 }, async () => {
  const ctx = await browser.newContext();
  const ctx2 = await browser.newContext();
  const page = await ctx.newPage();
  const problems = watchPage(page, 'P');
  try {
    await page.goto(`${server.base}/`);
    await page.locator('#auth-view').waitFor({ state: 'visible' });
    await screenshot(page, 'login');
    const name = uname('carol');
    await page.locator('#tab-register').click();
    await page.locator('#auth-name').fill(name);
    await page.locator('#auth-password').fill('short');
    await page.locator('#auth-submit').click();
    await page.locator('#auth-error', { hasText: '8' }).waitFor();
    await page.locator('#auth-password').fill('long-enough-pw');
    await page.locator('#auth-password').press('Enter');
    await page.locator('#conn[data-state="open"]').waitFor({ timeout: 15000 });
    await page.locator('#me-name', { hasText: name }).waitFor();

    // a private room, and an invitation for dave
    const dave = await registerAndLogin(ctx2, server.base, uname('dave'));
    const room = `priv-${Math.random().toString(36).slice(2, 7)}`;
    await page.locator('#new-room-btn').click();
    await page.locator('#room-name').fill(room);
    await page.locator('#room-private').check();
    await page.locator('#room-name').press('Enter');
    await assertTitle(page, `#${room}`);
    await page.locator('#composer-input').fill('members only');
    await page.locator('#composer-input').press('Enter');
    await page.locator('#messages .msg-text', { hasText: 'members only' }).waitFor();
    await page.locator('#invite-btn').click();
    await page.locator('#invite-name').fill(dave.name);
    await page.locator('#invite-name').press('Enter');
    await page.locator('#invite-dialog').waitFor({ state: 'hidden' });
    const pageD = await ctx2.newPage();
    watchPage(pageD, 'D');
    await openChat(pageD, server.base);
    const roomBtn = pageD.locator('#room-list button', { hasText: room });
    await roomBtn.waitFor({ timeout: 20000 });
    await roomBtn.click();
    await pageD.locator('#messages .msg-text', { hasText: 'members only' }).waitFor({ timeout: 5000 });

    // log out again
    await page.locator('#logout-btn').click();
    await page.locator('#auth-view').waitFor({ state: 'visible' });
    assert.deepEqual(problems, []);
  } catch (err) {
    await failureShot(page, 'failure-login');
    err.message += `\n--- server log tail ---\n${server.log().slice(-2000)}`;
    throw err;
  } finally {
    await ctx.close();
    await ctx2.close();
  }
});

test('image upload shows inline for both users', { skip: skip || false, timeout: 90000 }, async () => {
  const ctxA = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const ctxB = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await registerAndLogin(ctxA, server.base, uname('upa'));
  await registerAndLogin(ctxB, server.base, uname('upb'));
  const pageA = await ctxA.newPage();
  const pageB = await ctxB.newPage();
  const problems = [...watchPage(pageA, 'A'), ...watchPage(pageB, 'B')];
  try {
    await openChat(pageA, server.base);
    await openChat(pageB, server.base);
    // a plain file (not an image) becomes a download link
    await pageA.locator('#file-input').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello file') });
    await pageB.locator('#messages a.msg-file', { hasText: 'notes.txt' }).waitFor({ timeout: 10000 });
    // image upload shows inline on both sides
    await pageA.locator('#file-input').setInputFiles({ name: 'gradient.png', mimeType: 'image/png', buffer: makePng() });
    for (const p of [pageA, pageB]) {
      const img = p.locator('#messages img.msg-image').last();
      await img.waitFor({ timeout: 10000 });
      await p.waitForFunction(() => { const i = [...document.querySelectorAll('#messages img.msg-image')].pop(); return i && i.complete && i.naturalWidth > 0; }, null, { timeout: 10000 });
    }
    const natural = await pageB.$eval('#messages img.msg-image', (i) => [i.naturalWidth, i.naturalHeight]);
    assert.deepEqual(natural, [96, 64]);

    await pageB.locator('#messages').evaluate((el) => { el.scrollTop = el.scrollHeight; });
    await screenshot(pageB, 'chat-upload');
    assert.deepEqual(problems, []);
  } catch (err) {
    await failureShot(pageA, 'failure-upload-a');
    err.message += `\n--- server log tail ---\n${server.log().slice(-2000)}`;
    throw err;
  } finally {
    await ctxA.close();
    await ctxB.close();
  }
});

async function assertTitle(page, text) {
  await page.locator('#chan-title', { hasText: text }).waitFor({ timeout: 10000 });
}
