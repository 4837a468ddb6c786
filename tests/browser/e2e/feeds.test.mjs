// The feed dashboards update live: quote board, scores, map.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { skipReason, startServer, launchBrowser, uname, registerAndLogin, watchPage, screenshot, failureShot } from './helpers.mjs';

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

async function withPage(t, fn, { login = false, viewport = { width: 1280, height: 800 } } = {}) {
  const ctx = await browser.newContext({ viewport });
  if (login) await registerAndLogin(ctx, server.base, uname('viewer'));
  const page = await ctx.newPage();
  const problems = watchPage(page, t.name);
  try {
    await fn(page);
    assert.deepEqual(problems, []);
  } catch (err) {
    await failureShot(page, `failure-${t.name.split(' ')[0]}`);
    err.message += `\n--- server log tail ---\n${server.log().slice(-2000)}`;
    throw err;
  } finally {
    await ctx.close();
  }
}

test('ticker: the quote board shows every ticker feed and updates live (anonymous)', { skip, timeout: 90000 }, (t) => withPage(t, async (page) => {
  const feeds = await (await fetch(`${server.base}/api/feeds`)).json();
  const tickers = feeds.channels.filter((c) => c.startsWith('ticker:'));
  assert.ok(tickers.length > 0, 'the demo has ticker feeds');
  await page.goto(`${server.base}/ticker`);
  await page.locator('#conn[data-state="open"]').waitFor({ timeout: 15000 });
  await page.waitForFunction((n) => document.querySelectorAll('.quote').length >= n, tickers.length);
  // every card gets a price
  await page.waitForFunction(() => [...document.querySelectorAll('.quote')].every((c) => c.dataset.price), null, { timeout: 20000 });
  const prices = await page.$$eval('.quote', (els) => els.map((e) => e.dataset.price));
  // and some price changes while we look, with a flash and a sparkline
  await page.waitForFunction((before) => [...document.querySelectorAll('.quote')].some((c, i) => c.dataset.price !== before[i]), prices, { timeout: 30000 });
  await page.waitForFunction(() => document.querySelector('.quote .spark polyline'), null, { timeout: 30000 });
  const text = await page.locator('.quote').first().locator('.quote-price').textContent();
  assert.match(text, /\d/);
  await screenshot(page, 'ticker');
}));

test('sports: scores and a timeline (anonymous)', { skip, timeout: 90000 }, (t) => withPage(t, async (page) => {
  await page.goto(`${server.base}/sports`);
  await page.locator('#conn[data-state="open"]').waitFor({ timeout: 15000 });
  await page.locator('.match').first().waitFor();
  await page.waitForFunction(() => [...document.querySelectorAll('.match .score')].every((s) => /\d+ : \d+/.test(s.textContent)), null, { timeout: 20000 });
  await page.waitForFunction(() => /\S/.test(document.querySelector('.match .team.home').textContent) && document.querySelector('.match .team.home').textContent !== '–', null, { timeout: 20000 });
  const n = await page.locator('.match').count();
  if (n > 1) {
    await page.locator('.match').nth(1).click();
    assert.equal(await page.locator('.match').nth(1).getAttribute('aria-pressed'), 'true');
  }
  await page.locator('#tl-title').waitFor();
  assert.match(await page.locator('#tl-title').textContent(), /\d+ – \d+/);
  await screenshot(page, 'sports');
  // phone-sized
  await page.setViewportSize({ width: 390, height: 800 });
  await screenshot(page, 'sports-mobile');
}));

test('map: anonymous visitors get a login link', { skip, timeout: 60000 }, (t) => withPage(t, async (page) => {
  await page.goto(`${server.base}/map`);
  await page.locator('#conn[data-state="open"]').waitFor({ timeout: 15000 });
  // either positions are public on this server, or the page says to log in
  await page.waitForFunction(() => document.getElementById('notice').textContent.includes('Log in') || document.querySelector('#entities li .small')?.textContent, null, { timeout: 30000 });
  const notice = await page.locator('#notice').textContent();
  if (!(await page.locator('#entities li .small').first().textContent().catch(() => ''))) assert.match(notice, /Log in/);
  await page.locator('#notice a[href="/"]').waitFor();
  await screenshot(page, 'map-anonymous');
}));

test('map: entities move live, follow one, who is near', { skip, timeout: 120000 }, (t) => withPage(t, async (page) => {
  await page.goto(`${server.base}/map`);
  await page.locator('#conn[data-state="open"]').waitFor({ timeout: 15000 });
  await page.locator('#entities li button').first().waitFor({ timeout: 15000 });
  // wait for positions, then for movement
  await page.waitForFunction(() => document.querySelectorAll('#entities li').length > 0);
  const first = page.locator('#entities li button').first();
  await first.click();
  await page.locator('#follow-name').waitFor();
  const pos = () => page.locator('#details dd').nth(3).textContent();
  const p0 = await pos();
  await page.waitForFunction((p) => { const d = document.querySelectorAll('#details dd')[3]; return d && d.textContent !== p; }, p0, { timeout: 30000 });
  // clicking the canvas where the followed entity is drawn (the centre) keeps it followed
  const box = await page.locator('#map').boundingBox();
  await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  await page.locator('#follow-name').waitFor();
  // who is near the map centre
  await page.locator('#near-center').click();
  await page.locator('#near-radius').fill('3000');
  await page.locator('#near-form button[type=submit]').click();
  await page.locator('#near-results li button').first().waitFor({ timeout: 10000 });
  await page.keyboard.press('Escape');
  await page.locator('#fit').click();
  await page.waitForTimeout(1500);
  await screenshot(page, 'map');
}, { login: true }));
