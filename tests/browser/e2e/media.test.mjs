// Voice messages and calls in the chat page, with Chromium's fake camera and microphone:
// a voice message recorded for about 2 s is sent, shows its duration and plays on the
// other side; a video message likewise, with its poster; a video call connects and
// decodes remote video on both sides, a second tab of the callee stops ringing when the
// first answers, hanging up ends both sides and the DM shows the call record; a
// declined call shows as declined on both sides.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  skipReason, startServer, launchBrowser, uname, registerAndLogin, watchPage, screenshot, failureShot, openChat,
} from './helpers.mjs';

const skip = skipReason();
let server;
let browser;

before(async () => {
  if (skip) return;
  server = await startServer();
  browser = await launchBrowser({ media: true });
});
after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

async function newUser(prefix) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, permissions: ['camera', 'microphone'] });
  const user = await registerAndLogin(ctx, server.base, uname(prefix));
  return { ctx, user };
}

/** alice opens a DM with bob and writes in it; bob opens it from his list. */
async function openDm(pageA, pageB, alice, bob) {
  await pageA.locator('#user-search').fill(bob.name);
  await pageA.locator('#user-results button', { hasText: bob.name }).click();
  await pageA.locator('#chan-title', { hasText: `@${bob.name}` }).waitFor();
  await pageA.locator('#composer-input').fill('hello');
  await pageA.locator('#composer-input').press('Enter');
  const dm = pageB.locator('#dm-list button', { hasText: alice.name });
  await dm.waitFor({ timeout: 20000 });
  await dm.click();
  await pageB.locator('#chan-title', { hasText: `@${alice.name}` }).waitFor();
  await pageB.locator('#messages .msg-text', { hasText: 'hello' }).waitFor({ timeout: 5000 });
}

const button = (page, name) => page.getByRole('button', { name, exact: true });

/** Wait until the page's call shows `state` (body[data-call]). */
function callState(page, state, timeout = 20000) {
  return page.locator(`body[data-call="${state}"]`).waitFor({ state: 'attached', timeout });
}

/** Frames of the remote video decoded so far (getStats). */
async function framesDecoded(page) {
  return page.evaluate(async () => { const s = await window.chatCalls.stats(); return s ? s.framesDecoded : 0; });
}

test('a voice message is recorded, sent with its duration and waveform, and plays on the other side', { skip: skip || false, timeout: 120000 }, async () => {
  const a = await newUser('alice');
  const b = await newUser('bob');
  const pageA = await a.ctx.newPage();
  const pageB = await b.ctx.newPage();
  const problems = [...watchPage(pageA, 'A'), ...watchPage(pageB, 'B')];
  try {
    await openChat(pageA, server.base);
    await openChat(pageB, server.base);
    await openDm(pageA, pageB, a.user, b.user);

    // press and hold for about 2 s
    const rec = button(pageA, 'Record voice message');
    await rec.hover();
    await pageA.mouse.down();
    await pageA.locator('#rec-bar:not(.hidden)').waitFor();
    await pageA.locator('#rec-time', { hasText: '0:01' }).waitFor({ timeout: 5000 });
    await pageA.waitForTimeout(1200);
    await pageA.mouse.up();
    await pageA.locator('#rec-bar.hidden').waitFor({ state: 'attached' });

    const voiceB = pageB.locator('#messages .voice-msg');
    await voiceB.waitFor({ timeout: 15000 });
    const data = await pageB.evaluate(() => {
      const rows = [...document.querySelectorAll('#messages .msg-row')];
      return rows.map((r) => r._m.data).find((d) => d.type === 'audio');
    });
    assert.ok(data.duration_ms >= 1800 && data.duration_ms <= 4000, `duration ${data.duration_ms}`);
    assert.ok(Array.isArray(data.peaks) && data.peaks.length > 0 && data.peaks.length <= 64, `peaks ${data.peaks}`);
    assert.ok(data.peaks.every((p) => Number.isInteger(p) && p >= 0 && p <= 255));
    assert.ok(data.peaks.some((p) => p > 0), 'the fake microphone beeps: some level');
    assert.match(data.mime, /^audio\/(webm|ogg)/);
    assert.match(await voiceB.locator('.voice-time').textContent(), /^0:0[2-3]$/);
    assert.equal(await voiceB.locator('.bar').count(), data.peaks.length);

    await pageB.mouse.move(5, 300);
    await screenshot(pageB, 'chat-voice-message');
    // bob plays it
    await voiceB.getByRole('button', { name: 'Play voice message' }).click();
    await pageB.waitForFunction(() => {
      const a = document.querySelector('#messages .voice-msg audio');
      return a && a.currentTime > 0.3;
    }, null, { timeout: 10000 });
    await voiceB.getByRole('button', { name: 'Pause voice message' }).waitFor();

    // holding Space on the focused button records too
    await button(pageA, 'Record voice message').focus();
    await pageA.keyboard.down('Space');
    await pageA.locator('#rec-time', { hasText: '0:01' }).waitFor({ timeout: 5000 });
    await pageA.keyboard.up('Space');
    await pageB.locator('#messages .voice-msg').nth(1).waitFor({ timeout: 15000 });
    assert.match(await pageB.locator('#messages .voice-msg .voice-time').nth(1).textContent(), /^0:0[1-2]$/);

    // Escape cancels a recording: nothing is sent
    await button(pageA, 'Record voice message').click();
    await pageA.locator('#rec-bar:not(.hidden)').waitFor();
    await pageA.waitForTimeout(600);
    await pageA.keyboard.press('Escape');
    await pageA.locator('#rec-bar.hidden').waitFor({ state: 'attached' });
    await pageA.waitForTimeout(1000);
    assert.equal(await pageA.locator('#messages .voice-msg').count(), 2);
    assert.deepEqual(problems, []);
  } catch (err) {
    await failureShot(pageA, 'media-voice-A');
    await failureShot(pageB, 'media-voice-B');
    throw err;
  } finally {
    await a.ctx.close();
    await b.ctx.close();
  }
});

test('a video message is recorded with a poster and plays on the other side', { skip: skip || false, timeout: 120000 }, async () => {
  const a = await newUser('alice');
  const b = await newUser('bob');
  const pageA = await a.ctx.newPage();
  const pageB = await b.ctx.newPage();
  const problems = [...watchPage(pageA, 'A'), ...watchPage(pageB, 'B')];
  try {
    await openChat(pageA, server.base);
    await openChat(pageB, server.base);
    await openDm(pageA, pageB, a.user, b.user);
    await button(pageA, 'Record video message').click();
    await pageA.locator('#vrec-box:not(.hidden)').waitFor();
    await pageA.locator('#vrec-time', { hasText: '0:02' }).waitFor({ timeout: 8000 });
    await button(pageA, 'Record video message').click();
    await pageA.locator('#vrec-box.hidden').waitFor({ state: 'attached' });

    const videoB = pageB.locator('#messages .video-msg');
    await videoB.waitFor({ timeout: 15000 });
    const data = await pageB.evaluate(() => [...document.querySelectorAll('#messages .msg-row')].map((r) => r._m.data).find((d) => d.type === 'video'));
    assert.ok(data.duration_ms >= 1500 && data.duration_ms <= 5000, `duration ${data.duration_ms}`);
    assert.match(data.mime, /^video\/(webm|mp4)/);
    assert.match(String(data.poster), /^\/uploads\/[0-9a-f]{32}\.jpg$/);
    assert.match(await videoB.textContent(), /Video message · 0:0[2-4]/);
    assert.equal(await videoB.locator('video').getAttribute('poster'), data.poster);
    await videoB.locator('video').evaluate((v) => v.play());
    await pageB.waitForFunction(() => document.querySelector('#messages .video-msg video').currentTime > 0.3, null, { timeout: 10000 });
    assert.deepEqual(problems, []);
  } catch (err) {
    await failureShot(pageA, 'media-video-msg-A');
    await failureShot(pageB, 'media-video-msg-B');
    throw err;
  } finally {
    await a.ctx.close();
    await b.ctx.close();
  }
});

test('a video call: both connect and decode video, a second tab stops ringing, hang-up records the call; a declined call', { skip: skip || false, timeout: 180000 }, async () => {
  const a = await newUser('alice');
  const b = await newUser('bob');
  const pageA = await a.ctx.newPage();
  const pageB = await b.ctx.newPage();
  const problems = [...watchPage(pageA, 'A'), ...watchPage(pageB, 'B')];
  let pageB2;
  try {
    await openChat(pageA, server.base);
    await openChat(pageB, server.base);
    await openDm(pageA, pageB, a.user, b.user);
    pageB2 = await b.ctx.newPage(); // bob's second tab
    problems.push(...watchPage(pageB2, 'B2'));
    await openChat(pageB2, server.base);
    await pageB2.waitForFunction(() => window.chatCalls);

    // alice calls bob with video; both of bob's tabs ring
    await button(pageA, 'Video call').click();
    await callState(pageA, 'ringing');
    await button(pageB, 'Accept').waitFor({ timeout: 10000 });
    await button(pageB2, 'Accept').waitFor({ timeout: 10000 });
    await button(pageB, 'Decline').waitFor();
    await button(pageB, 'Accept').click();

    await callState(pageA, 'connected');
    await callState(pageB, 'connected');
    // the other tab stopped ringing
    await pageB2.locator('body:not([data-call="incoming"])').waitFor({ state: 'attached', timeout: 10000 });
    assert.equal(await button(pageB2, 'Accept').isVisible(), false);

    // both decode frames of the other's camera
    for (const p of [pageA, pageB]) {
      await p.waitForFunction(async () => { const s = await window.chatCalls.stats(); return s && s.framesDecoded > 0; }, null, { timeout: 20000, polling: 500 });
      assert.ok(await framesDecoded(p) > 0);
    }
    for (const name of ['Mute', 'Camera', 'Hang up']) await button(pageA, name).waitFor();
    await button(pageA, 'Mute').click();
    assert.equal(await button(pageA, 'Mute').getAttribute('aria-pressed'), 'true');
    assert.equal(await pageA.evaluate(() => window.chatCalls.call.localStream.getAudioTracks()[0].enabled), false);
    await button(pageA, 'Mute').click();
    await pageA.locator('#call-timer', { hasText: /0:0[1-9]/ }).waitFor({ timeout: 10000 });
    await pageA.waitForFunction(() => document.getElementById('remote-video').videoWidth > 0, null, { timeout: 10000 });
    await screenshot(pageA, 'chat-video-call');

    // alice hangs up: both end, the DM shows the answered call with its duration
    await button(pageA, 'Hang up').click();
    await callState(pageA, 'ended', 5000);
    await callState(pageB, 'ended', 10000);
    await pageB.locator('#call-status', { hasText: 'Call ended' }).waitFor();
    for (const p of [pageA, pageB]) {
      const rec = p.locator('#messages .call-record[data-status="answered"]');
      await rec.waitFor({ timeout: 10000 });
      assert.match(await rec.textContent(), /Video call · 0:\d\d/);
    }
    await pageB2.close();
    pageB2 = null;

    // a voice call bob declines
    await button(pageA, 'Voice call').click();
    await button(pageB, 'Decline').waitFor({ timeout: 10000 });
    await button(pageB, 'Decline').click();
    await pageA.locator('#call-status', { hasText: 'Declined' }).waitFor({ timeout: 10000 });
    for (const p of [pageA, pageB]) {
      const rec = p.locator('#messages .call-record[data-status="declined"]');
      await rec.waitFor({ timeout: 10000 });
      assert.match(await rec.textContent(), /Voice call declined/);
    }
    assert.deepEqual(problems, []);
  } catch (err) {
    await failureShot(pageA, 'media-call-A');
    await failureShot(pageB, 'media-call-B');
    if (pageB2) await failureShot(pageB2, 'media-call-B2');
    throw err;
  } finally {
    await a.ctx.close();
    await b.ctx.close();
  }
});
