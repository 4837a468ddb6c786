// Test doubles for chat-client.js: a scripted WebSocket and a manual clock.

/** Manual clock: timers run only when advance() passes their due time. */
export class FakeClock {
  constructor() { this.t = 1_000_000; this.timers = new Map(); this.nextId = 1; }
  now = () => this.t;
  setTimeout = (fn, ms) => { const id = this.nextId++; this.timers.set(id, { fn, at: this.t + Math.max(0, ms || 0) }); return id; };
  clearTimeout = (id) => { this.timers.delete(id); };
  get timersApi() { return { setTimeout: this.setTimeout, clearTimeout: this.clearTimeout }; }
  /** Run every timer due within `ms`, in time order (timers added meanwhile included). */
  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let next = null;
      for (const [id, tm] of this.timers) if (tm.at <= end && (!next || tm.at < next[1].at)) next = [id, tm];
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
      await flush();
    }
    this.t = end;
    await flush();
  }
}

/** Let pending promise callbacks run. */
export async function flush() { for (let i = 0; i < 10; i++) await Promise.resolve(); await new Promise((r) => setImmediate(r)); }

/** A WebSocket class whose instances are driven by the test. */
export function makeFakeWebSocket() {
  class FakeWebSocket {
    static instances = [];
    static get last() { return FakeWebSocket.instances[FakeWebSocket.instances.length - 1]; }
    constructor(url) {
      this.url = url;
      this.sent = [];
      this.readyState = 0;
      this.closedByClient = null;
      FakeWebSocket.instances.push(this);
    }
    send(data) {
      if (this.readyState !== 1) throw new Error('not open');
      this.sent.push(JSON.parse(data));
    }
    close(code, reason) { this.closedByClient = { code, reason }; this.readyState = 3; }
    // --- driven by tests
    serverOpen() { this.readyState = 1; this.onopen && this.onopen({}); }
    serverSend(obj) { this.onmessage && this.onmessage({ data: JSON.stringify(obj) }); }
    serverWelcome(extra = {}) {
      this.serverOpen();
      this.serverSend({ ev: 'welcome', session: 's-1', user: { id: '42', name: 'alice' }, heartbeat_s: 25, limits: { max_message_bytes: 65536 }, ...extra });
    }
    serverClose(code = 1006, reason = '') { this.readyState = 3; this.onclose && this.onclose({ code, reason }); }
    /** Frames sent with op `op`. */
    ops(op) { return this.sent.filter((f) => f.op === op); }
    reply(frame, ok) { this.serverSend({ id: frame.id, ok }); }
    replyError(frame, code, message = code) { this.serverSend({ id: frame.id, error: { code, message } }); }
  }
  return FakeWebSocket;
}
