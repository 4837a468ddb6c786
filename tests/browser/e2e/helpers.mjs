// Helpers of the browser tests: start/stop the real server, launch Debian's chromium.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const SERVER_BIN = path.resolve(ROOT, process.env.CHAT_SERVER_BIN || 'target/debug/chatserver');
export const SCREENSHOTS = process.env.SCREENSHOT_DIR || path.join(ROOT, 'docs/screenshots');
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

/** Reason to skip the e2e tests, or null. With E2E_REQUIRED=1 (tests/browser.rs, CI)
 *  there is none: a missing prerequisite throws, so the test file fails. */
export function skipReason() {
  let reason = null;
  if (!fs.existsSync(SERVER_BIN)) reason = `server binary ${SERVER_BIN} not built yet`;
  else if (!fs.existsSync(CHROMIUM)) reason = `${CHROMIUM} missing (apt-get install -y chromium)`;
  if (reason && process.env.E2E_REQUIRED === '1') throw new Error(`E2E_REQUIRED=1, but ${reason}`);
  return reason;
}

const dataDirs = [];
process.on('exit', () => {
  if (process.env.E2E_KEEP_DATA) return;
  for (const d of dataDirs) { try { fs.rmSync(d, { recursive: true, force: true }); } catch (_) { /* ignore */ } }
});

/** A fresh data dir, removed when the test process exits (unless E2E_KEEP_DATA is set). */
export function freshDataDir() {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-e2e-'));
  dataDirs.push(d);
  return d;
}

/**
 * Start the server. Resolves with {port, base, proc, dataDir, stop(), log()} once it
 * printed `listening on 127.0.0.1:PORT`.
 */
export function startServer({ dataDir = freshDataDir(), port = 0, env = {} } = {}) {
  const isNode = /\.m?js$/.test(SERVER_BIN);
  const cmd = isNode ? process.execPath : SERVER_BIN;
  const args = isNode ? [SERVER_BIN] : [];
  // The server's settings come from here only, never from the developer's or CI's
  // environment (a DATABASE_URL there would point every test at one shared database).
  const inherited = Object.fromEntries(Object.entries(process.env)
    .filter(([k]) => !k.startsWith('CHAT_') && k !== 'DATABASE_URL' && k !== 'REDIS_URL'));
  const proc = spawn(cmd, args, {
    cwd: ROOT,
    env: {
      ...inherited,
      CHAT_BIND: `127.0.0.1:${port}`,
      CHAT_DATA_DIR: dataDir,
      CHAT_DEMO: 'true',
      CHAT_ALLOW_ANONYMOUS: 'true',
      RUST_LOG: process.env.RUST_LOG || 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let logs = '';
  proc.stderr.on('data', (d) => { logs += d; if (logs.length > 200000) logs = logs.slice(-100000); });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`server did not start in 30 s:\n${out}\n${logs.slice(-3000)}`)); }, 30000);
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited with ${code} before listening:\n${logs.slice(-3000)}`)); });
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening on ([\d.]+):(\d+)/.exec(out);
      if (!m) return;
      clearTimeout(timer);
      proc.removeAllListeners('exit');
      const p = Number(m[2]);
      resolve({
        port: p,
        base: `http://127.0.0.1:${p}`,
        proc,
        dataDir,
        log: () => logs,
        stop: () => stopProc(proc),
      });
    });
  });
}

function stopProc(proc) {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) { resolve(); return; }
    const kill = setTimeout(() => proc.kill('SIGKILL'), 8000);
    proc.once('exit', () => { clearTimeout(kill); resolve(); });
    proc.kill('SIGTERM');
  });
}

/** Chromium; `media: true` adds a fake camera and microphone (a test pattern and a
 *  beep) that need no permission prompt, and lets WebRTC connect over loopback. */
export function launchBrowser({ media = false } = {}) {
  const extra = media
    ? ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', '--autoplay-policy=no-user-gesture-required']
    : [];
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', ...extra],
  });
}

/** A unique user name. */
export function uname(prefix) {
  return `${prefix}_${Math.random().toString(36).slice(2, 8)}`;
}

/** Register a user and log the browser context in (the context keeps the cookie). */
export async function registerAndLogin(context, base, name, password = 'correct-horse-1') {
  const r = await context.request.post(`${base}/api/register`, { data: { name, password } });
  if (!r.ok()) throw new Error(`register ${name}: ${r.status()} ${await r.text()}`);
  const l = await context.request.post(`${base}/api/login`, { data: { name, password } });
  if (!l.ok()) throw new Error(`login ${name}: ${l.status()} ${await l.text()}`);
  const body = await l.json();
  return { name, password, ...body };
}

/** Collect page errors and dialogs; fail-fast helpers read them. */
export function watchPage(page, label) {
  const problems = [];
  page.on('pageerror', (e) => problems.push(`${label} pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error' && !/WebSocket|Failed to load resource|ERR_CONNECTION/.test(m.text())) problems.push(`${label} console: ${m.text()}`); });
  page.dialogs = [];
  page.on('dialog', async (d) => { page.dialogs.push(d.message()); await d.dismiss().catch(() => {}); });
  return problems;
}

/** Screenshot of a failed test: into $E2E_ARTIFACTS or the temp dir (not docs/). */
export async function failureShot(page, name) {
  const dir = process.env.E2E_ARTIFACTS || path.join(os.tmpdir(), 'chat-e2e-failures');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name.replace(/[^A-Za-z0-9_-]+/g, '-')}.png`);
  await page.screenshot({ path: file }).catch(() => {});
  process.stderr.write(`failure screenshot: ${file}\n`);
}

export async function screenshot(page, name) {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`) });
}

/** A real PNG image (gradient), w x h pixels. */
export function makePng(w = 96, h = 64) {
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    raw[y * (w * 3 + 1)] = 0;
    for (let x = 0; x < w; x++) {
      const o = y * (w * 3 + 1) + 1 + x * 3;
      raw[o] = Math.round((x / w) * 255); raw[o + 1] = Math.round((y / h) * 255); raw[o + 2] = 180;
    }
  }
  const crcTable = Array.from({ length: 256 }, (_, n) => { let c = n; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; return c >>> 0; });
  const crc = (buf) => { let c = 0xffffffff; for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const c = Buffer.alloc(4); c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 2;
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

/** Open the chat page and wait until it is online. */
export async function openChat(page, base) {
  await page.goto(`${base}/`);
  await page.locator('#chat-view').waitFor({ state: 'visible' });
  await page.locator('#conn[data-state="open"]').waitFor({ timeout: 15000 });
}

/** Texts of the visible messages of the open channel. */
export function messageTexts(page) {
  return page.$$eval('#messages .msg-row .msg-text', (els) => els.map((e) => e.textContent));
}
