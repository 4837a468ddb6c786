// The admin console: live counts over the WebSocket, connected users, and a kick whose
// victim's chat page says it was disconnected and stays so.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  skipReason, startServer, launchBrowser, uname, registerAndLogin, watchPage, failureShot, openChat, SERVER_BIN, screenshot,
} from './helpers.mjs';

const skip = skipReason();
let server;
let browser;

before(async () => {
  if (skip) return;
  server = await startServer({ env: { CHAT_DEMO: 'false' } });
  browser = await launchBrowser();
});
after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

/** `chatserver <args>` on the running server's data directory (the command line). */
function cli(...args) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CHAT_') && k !== 'DATABASE_URL'));
  return execFileSync(SERVER_BIN, args, { env: { ...env, CHAT_DATA_DIR: server.dataDir, RUST_LOG: 'warn' } }).toString();
}

test('an admin kicks a user from the console; the user\'s page shows it', { skip: skip || false, timeout: 120000 }, async () => {
  const ctxAdmin = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const ctxBob = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const root = await registerAndLogin(ctxAdmin, server.base, uname('root'));
  cli('user', 'role', root.name, 'admin');
  // The role change revoked the old token: log in again to get one with the new role.
  const l = await ctxAdmin.request.post(`${server.base}/api/login`, { data: { name: root.name, password: root.password } });
  assert.equal(l.status(), 200);
  const bob = await registerAndLogin(ctxBob, server.base, uname('bob'));
  const pageBob = await ctxBob.newPage();
  const pageAdmin = await ctxAdmin.newPage();
  const problems = [...watchPage(pageBob, 'bob'), ...watchPage(pageAdmin, 'admin')];
  try {
    await openChat(pageBob, server.base);
    await pageAdmin.goto(`${server.base}/admin`);
    // live counts arrive over the WebSocket
    await pageAdmin.locator('#conn[data-state="open"]').waitFor({ timeout: 15000 });
    await pageAdmin.waitForFunction(() => Number(document.querySelector('#c-connections').textContent) >= 2, null, { timeout: 10000 });
    await pageAdmin.locator('#busiest td', { hasText: 'room:lobby' }).waitFor({ timeout: 10000 });
    const row = pageAdmin.locator('#users tr', { hasText: bob.name });
    await row.waitFor({ timeout: 10000 });
    await pageAdmin.locator('#config td', { hasText: 'outbox_max_bytes' }).waitFor();
    // the secret (generated into the data directory) is never shown
    const secret = fs.readFileSync(path.join(server.dataDir, 'jwt_secret'), 'utf8').trim();
    assert.equal((await pageAdmin.locator('#config').textContent()).includes(secret), false);
    await screenshot(pageAdmin, 'admin');

    await pageAdmin.getByRole('button', { name: `Kick ${bob.name}` }).click();
    await pageBob.locator('#kicked', { hasText: 'disconnected by a moderator' }).waitFor({ timeout: 10000 });
    assert.equal(await pageBob.evaluate(() => document.body.dataset.conn), 'kicked');
    // it stays disconnected (no automatic reconnect undoing the kick)
    await pageBob.waitForTimeout(1500);
    assert.equal(await pageBob.evaluate(() => window.chatClient.state), 'closed');
    await pageAdmin.getByRole('cell', { name: 'kick', exact: true }).waitFor({ timeout: 10000 });
    await pageAdmin.locator('#users tr', { hasText: bob.name }).waitFor({ state: 'detached', timeout: 10000 });
    assert.deepEqual(problems, []);
  } catch (err) {
    await failureShot(pageAdmin, 'admin-console');
    await failureShot(pageBob, 'admin-kicked');
    throw err;
  } finally {
    await ctxAdmin.close();
    await ctxBob.close();
  }
});

test('the console is refused to non-admins', { skip: skip || false, timeout: 60000 }, async () => {
  const ctx = await browser.newContext();
  await registerAndLogin(ctx, server.base, uname('eve'));
  const page = await ctx.newPage();
  try {
    await page.goto(`${server.base}/admin`);
    await page.locator('#notice', { hasText: 'for admins' }).waitFor({ timeout: 10000 });
    const r = await ctx.request.get(`${server.base}/api/admin/connections`);
    assert.equal(r.status(), 403);
  } finally {
    await ctx.close();
  }
});
