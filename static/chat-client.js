/**
 * chat-client.js — a small WebSocket client for the realtime event server (protocol v1.1).
 *
 * Plain ES module, no dependencies. Works in browsers and in node (inject a WebSocket
 * constructor, e.g. from the `ws` package, through `options.WebSocket`).
 *
 *   import { ChatClient } from '/static/chat-client.js';
 *   const client = new ChatClient();                 // same origin, session cookie
 *   client.on('state', ({ state }) => console.log(state));
 *   await client.connect();
 *   const lobby = client.channel('room:lobby');
 *   lobby.on('message', (m) => console.log(m.from.name, m.data.text));
 *   const { messages } = await lobby.join();
 *   await lobby.publish({ type: 'text', text: 'hello' });
 *
 * What it does for you:
 *  - authentication by `?token=`, by a first `{"op":"auth"}` frame, or by cookie;
 *  - reconnection with exponential backoff and full jitter;
 *  - after a reconnect every joined channel is joined again with `since` (+ `epoch`) so
 *    nothing is missed; missed messages that did not fit the reply (`more:true`) are
 *    fetched with `history after=` pages, and live messages arriving meanwhile are held
 *    until then, so each message is delivered once and in seq order; messages are
 *    deduplicated by channel+seq; when the server cannot recover (`recovered:false`) a
 *    'reset' event carries the fresh history;
 *  - presence of large rooms: a count (`presenceCount`) always, the member list where
 *    the server still sends who joined and left (re-read page by page when it resumes);
 *  - an outbox: publishes not yet acknowledged are sent again after a reconnect with the
 *    same `client_id` (the server answers a resend with the original seq);
 *  - request/reply matching by `id`, promises with timeouts;
 *  - heartbeat: if no frame arrives for 2 x heartbeat_s a `ping` is sent; no answer
 *    means the connection is dead and it is replaced.
 *
 * Full API: docs/CLIENT.md.
 */

/** Error carried by rejected promises: `code` is a protocol error code, or one of
 * 'timeout', 'disconnected', 'closed' added by the client. */
export class ChatError extends Error {
  constructor(code, message, details) {
    super(message || code);
    this.name = 'ChatError';
    this.code = code;
    if (details !== undefined) this.details = details;
  }
}

/**
 * Delay before reconnect attempt number `attempt` (0-based): "full jitter",
 * a uniform random value in [0, min(maxMs, baseMs * factor^attempt)).
 */
export function backoffDelay(attempt, { baseMs = 500, maxMs = 30000, factor = 2 } = {}, random = Math.random) {
  const cap = Math.min(maxMs, baseMs * Math.pow(factor, Math.max(0, attempt)));
  return Math.floor(random() * cap);
}

/** The DM channel of two users: ids sorted as strings. */
export function dmChannel(idA, idB) {
  const ids = [String(idA), String(idB)].sort();
  return `dm:${ids[0]},${ids[1]}`;
}

let clientIdCounter = 0;
/** A fresh client_id (≤ 64 chars). */
export function makeClientId() {
  clientIdCounter += 1;
  const rnd = Math.random().toString(36).slice(2, 10);
  return `c-${Date.now().toString(36)}-${rnd}-${clientIdCounter}`;
}

/** Tiny event emitter: on/off/once/emit; `on` returns an unsubscribe function. */
class Emitter {
  constructor() { this._handlers = new Map(); }
  on(type, fn) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(fn);
    return () => this.off(type, fn);
  }
  off(type, fn) { const s = this._handlers.get(type); if (s) s.delete(fn); }
  once(type, fn) {
    const off = this.on(type, (ev) => { off(); fn(ev); });
    return off;
  }
  emit(type, ev) {
    const s = this._handlers.get(type);
    if (!s) return;
    for (const fn of [...s]) {
      try { fn(ev); } catch (err) { setTimeout(() => { throw err; }, 0); }
    }
  }
}

/**
 * Seqs remembered per channel for deduplication, below the highest seq delivered.
 * Missed messages are delivered in seq order (live ones are held during a rejoin and
 * its catch-up), so `seq` only grows past messages that were delivered and anything at
 * or below `seq - SEEN_WINDOW` is an old duplicate; the window only has to cover live
 * messages racing with a join reply.
 */
const SEEN_WINDOW = 2048;
/** Largest `limit` of a `history` request, and of a `presence` page. */
const HISTORY_MAX_LIMIT = 200;
const PRESENCE_MAX_LIMIT = 500;
/** Above this many users present, presence events carry only the count. */
const PRESENCE_DIFF_MAX = 1000;
/** Pages read at most when the client re-reads a member list by itself. */
const PRESENCE_MAX_PAGES = 10;
const RETRYABLE = new Set(['unavailable', 'rate_limited', 'internal']);
const CHANNEL_EVENTS = ['message', 'presence', 'typing', 'edit', 'delete', 'reset', 'joined', 'left', 'state', 'error'];

function applyPresenceDiff(ch, msg) {
  for (const m of msg.joined || []) ch.members.set(String(m.id), { ...ch.members.get(String(m.id)), ...m });
  for (const m of msg.left || []) ch.members.delete(String(m.id));
}

/** One channel as seen by the client. Get it with `client.channel(name)`. */
export class Channel extends Emitter {
  constructor(client, name) {
    super();
    this.client = client;
    this.name = name;
    /** Highest seq seen (0 when none). */
    this.seq = 0;
    this.epoch = undefined;
    /** 'idle' | 'joining' | 'joined' | 'left' | 'failed' */
    this.state = 'idle';
    this.wanted = false;
    this.joinOptions = {};
    /** Online members: Map id -> {id, name, conns}. Complete unless `presenceLarge`. */
    this.members = new Map();
    /** Users present: the join reply's `presence_count`, then presence events' `count`. */
    this.presenceCount = 0;
    /**
     * true when `members` is not the complete list: a room with more than 1,000 users
     * present (join reply with more users than members, or count-only presence events).
     */
    this.presenceLarge = false;
    /** true while a rejoin fetches the missed messages that did not fit its reply. */
    this.catchingUp = false;
    this._seen = new Set();
    this._waiters = [];
    this._held = null; // live messages held during a rejoin and its catch-up
    this._catchup = null; // token of the running catch-up
    this._presenceGen = 0; // bumped when the member list is replaced
    this._presenceRead = null; // {diffs} while the member list is re-read
    this._presenceRetryAt = 0;
  }
  /** Join (or return the pending join). Resolves with the join reply. */
  join(opts) { return this.client.join(this.name, opts); }
  leave() { return this.client.leave(this.name); }
  publish(data, opts) { return this.client.publish(this.name, data, opts); }
  history(opts) { return this.client.history(this.name, opts); }
  historyAfter(after, opts) { return this.client.historyAfter(this.name, after, opts); }
  typing() { return this.client.typing(this.name); }
  read(seq) { return this.client.read(this.name, seq === undefined ? this.seq : seq); }
  edit(seq, data) { return this.client.edit(this.name, seq, data); }
  delete(seq) { return this.client.deleteMessage(this.name, seq); }
  presence(opts) { return this.client.presence(this.name, opts); }
  presenceAll(opts) { return this.client.presenceAll(this.name, opts); }
  /** Online members as an array. */
  memberList() { return [...this.members.values()]; }

  /** @returns {boolean} true when (seq) was not seen before; records it. */
  _accept(seq) {
    if (typeof seq !== 'number') return true;
    if (this._seen.has(seq) || seq <= this.seq - SEEN_WINDOW) return false;
    this._seen.add(seq);
    if (seq > this.seq) this.seq = seq;
    if (this._seen.size > SEEN_WINDOW * 2) {
      const floor = this.seq - SEEN_WINDOW;
      for (const s of this._seen) if (s <= floor) this._seen.delete(s);
    }
    return true;
  }
  _resetSeen(top) {
    this._seen.clear();
    this.seq = typeof top === 'number' ? top : 0;
  }
  _setState(state) {
    if (this.state === state) return;
    const prev = this.state;
    this.state = state;
    this.emit('state', { channel: this.name, state, prev });
  }
}

/**
 * The client. Options (all optional):
 *  url               WebSocket URL; default `ws(s)://<location.host>/ws`
 *  token             string, or (async) function returning one; none = cookie/anonymous.
 *                    With a function, a token about to expire (its `exp`) is replaced
 *                    on the open connection (`auth` op) before the server would close
 *                    it with 4001, and a connection closed with 4001 reconnects with
 *                    a fresh token.
 *  tokenMode         'query' (default: `?token=`) or 'frame' (first frame `{"op":"auth"}`)
 *  WebSocket         WebSocket constructor (default globalThis.WebSocket)
 *  requestTimeoutMs  default 10000
 *  publishTimeoutMs  give up on an unacknowledged publish after this (default 120000)
 *  welcomeTimeoutMs  default 10000
 *  backoff           { baseMs: 500, maxMs: 30000, factor: 2 }
 *  stableMs          a connection that lived this long resets the backoff (default 5000)
 *  heartbeatS        used until the welcome says otherwise (default 25)
 *  typingThrottleMs  default 2000
 *  reconnect         default true
 *  random, now, timers ({setTimeout, clearTimeout}) — injectable for tests
 */
export class ChatClient extends Emitter {
  constructor(options = {}) {
    super();
    this.options = {
      requestTimeoutMs: 10000,
      publishTimeoutMs: 120000,
      welcomeTimeoutMs: 10000,
      stableMs: 5000,
      heartbeatS: 25,
      typingThrottleMs: 2000,
      reconnect: true,
      tokenMode: 'query',
      ...options,
      backoff: { baseMs: 500, maxMs: 30000, factor: 2, ...(options.backoff || {}) },
    };
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    this.random = options.random || Math.random;
    this.now = options.now || (() => Date.now());
    const t = options.timers || {};
    this._setTimeout = t.setTimeout || ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = t.clearTimeout || ((h) => clearTimeout(h));

    /** 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed' */
    this.state = 'idle';
    /** The welcome frame of the current connection. */
    this.welcome = null;
    this.user = null;
    this.session = null;
    this.heartbeatS = this.options.heartbeatS;
    this.attempt = 0;
    this.channels = new Map();
    this.ws = null;
    this._nextId = 1;
    this._pending = new Map(); // id -> {op, resolve, reject, timer, entry}
    this._outbox = []; // publishes not yet acknowledged
    this._queue = []; // requests waiting for an open connection
    this._openWaiters = [];
    this._reconnectTimer = null;
    this._welcomeTimer = null;
    this._refreshTimer = null;
    this._authFailures = 0;
    this._heartbeatTimer = null;
    this._lastFrameAt = 0;
    this._openedAt = 0;
    this._pinging = false;
    this._typingAt = new Map();
    this.reconnectAt = 0;
  }

  // ------------------------------------------------------------------ connection

  /** Start connecting. Resolves at the first welcome; rejects if closed before. */
  connect() {
    if (this.state === 'open') return Promise.resolve(this.welcome);
    const p = this.ready();
    if (this.state === 'idle' || this.state === 'closed') {
      this._setState('connecting');
      this._open();
    }
    return p;
  }

  /** A promise resolved when the connection is (again) open. */
  ready() {
    if (this.state === 'open') return Promise.resolve(this.welcome);
    return new Promise((resolve, reject) => this._openWaiters.push({ resolve, reject }));
  }

  /** Close for good (no reconnect). Pending requests and publishes are rejected. */
  close(code = 1000, reason = 'client closed') {
    this._clearReconnect();
    this._clearTimer('_refreshTimer');
    this._stopHeartbeat();
    const ws = this.ws;
    this.ws = null;
    if (ws) { try { ws.close(code, reason); } catch (_) { /* ignore */ } }
    for (const ch of this.channels.values()) this._stopRecovery(ch);
    this._failPending(new ChatError('closed', 'client closed'), true);
    for (const w of this._openWaiters.splice(0)) w.reject(new ChatError('closed', 'client closed'));
    this._setState('closed');
  }

  /** Skip the backoff wait and reconnect now (e.g. on the browser's 'online' event). */
  reconnectNow() {
    if (this.state !== 'reconnecting' && this.state !== 'connecting') return;
    if (this.ws) return; // a connection attempt is already in progress
    this._clearReconnect();
    this._open();
  }

  /** Force-drop the current socket (as if the network failed); it reconnects. */
  drop() {
    if (this.ws) this._onClose(this.ws, { code: 4000, reason: 'dropped by client' });
  }

  async _buildUrl() {
    let url = this.options.url;
    if (!url) {
      const loc = globalThis.location;
      if (!loc) throw new ChatError('bad_request', 'options.url is required outside a browser');
      url = `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/ws`;
    }
    let token = this.options.token;
    if (typeof token === 'function') token = await token();
    this._token = token || null;
    if (token && this.options.tokenMode !== 'frame') {
      url += (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token);
    }
    return url;
  }

  async _open() {
    let url;
    try {
      url = await this._buildUrl();
    } catch (err) {
      this.emit('error', err);
      this._scheduleReconnect();
      return;
    }
    if (this.state === 'closed') return;
    let ws;
    try {
      ws = new this.WebSocket(url);
    } catch (err) {
      this.emit('error', err);
      this._scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.welcome = null;
    ws.onopen = () => this._onOpen(ws);
    ws.onmessage = (e) => this._onFrame(ws, e.data);
    ws.onclose = (e) => this._onClose(ws, e || {});
    ws.onerror = () => { /* a close event follows */ };
  }

  _onOpen(ws) {
    if (ws !== this.ws) return;
    this._lastFrameAt = this.now();
    this._authId = null;
    this._authWelcome = null;
    if (this._token && this.options.tokenMode === 'frame') {
      // With an id the server answers once the token is checked. Welcomes before that
      // answer may be an anonymous session's (servers that allow anonymous readers).
      this._authId = this._nextId++;
      ws.send(JSON.stringify({ id: this._authId, op: 'auth', token: this._token }));
    }
    this._welcomeTimer = this._setTimeout(() => {
      if (ws === this.ws && !this.welcome) this._kill(ws, 'no welcome');
    }, this.options.welcomeTimeoutMs);
  }

  _kill(ws, reason) {
    try { ws.close(4000, reason); } catch (_) { /* ignore */ }
    this._onClose(ws, { code: 4000, reason });
  }

  _onClose(ws, e) {
    if (ws !== this.ws) return;
    this.ws = null;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    this._clearTimer('_welcomeTimer');
    this._clearTimer('_refreshTimer');
    this._stopHeartbeat();
    const wasOpen = this.state === 'open';
    if (wasOpen && this.now() - this._openedAt >= this.options.stableMs) this.attempt = 0;
    this.welcome = null;
    // Requests in flight are lost; publishes stay in the outbox and are sent again.
    this._failPending(new ChatError('disconnected', 'connection lost'), false);
    for (const ch of this.channels.values()) {
      // Live messages held during a rejoin or its catch-up are dropped, not accepted:
      // the next rejoin asks from the last message delivered (`since` = ch.seq).
      this._stopRecovery(ch);
      if (ch.wanted && ch.state === 'joined') ch._setState('joining');
    }
    this.emit('close', { code: e.code, reason: e.reason, wasOpen });
    if (e.code === 4001 && wasOpen && typeof this.options.token === 'function' && this.options.reconnect) {
      // The token expired or was revoked while open: a fresh one may be had.
      this._scheduleReconnect(this._authFailures++ > 0 ? 3 : 0);
      return;
    }
    if (e.code === 4003) {
      // removed by a moderator: reconnecting at once would undo a kick
      this.emit('error', new ChatError('kicked', e.reason || 'removed by a moderator'));
      this.close(1000, 'kicked');
      return;
    }
    if (e.code === 4001) {
      // unauthorized: retrying with the same credentials would not help
      this.emit('error', new ChatError('unauthorized', e.reason || 'unauthorized'));
      this.close(1000, 'unauthorized');
      return;
    }
    if (this.state === 'closed') return;
    if (!this.options.reconnect) { this.close(); return; }
    this._scheduleReconnect(e.code === 4029 ? 2 : 0);
  }

  _scheduleReconnect(extraAttempts = 0) {
    if (this.state === 'closed') return;
    this.attempt += extraAttempts;
    const delay = backoffDelay(this.attempt, this.options.backoff, this.random);
    this.attempt += 1;
    this.reconnectAt = this.now() + delay;
    this._setState('reconnecting', { delay, attempt: this.attempt });
    this._clearReconnect();
    this._reconnectTimer = this._setTimeout(() => {
      this._reconnectTimer = null;
      this._open();
    }, delay);
  }

  _clearReconnect() { this._clearTimer('_reconnectTimer'); }

  _clearTimer(name) {
    if (this[name] != null) { this._clearTimeout(this[name]); this[name] = null; }
  }

  _setState(state, extra = {}) {
    const prev = this.state;
    if (prev === state && state !== 'reconnecting') return;
    this.state = state;
    this.emit('state', { state, prev, ...extra });
  }

  // ------------------------------------------------------------------ frames

  _send(obj) {
    if (!this.ws || this.state !== 'open') return false;
    try {
      this.ws.send(JSON.stringify(obj));
      return true;
    } catch (_) {
      return false;
    }
  }

  _onFrame(ws, raw) {
    if (ws !== this.ws) return;
    this._lastFrameAt = this.now();
    let msg;
    try { msg = JSON.parse(typeof raw === 'string' ? raw : String(raw)); } catch (_) { return; }
    if (!msg || typeof msg !== 'object') return;
    if (this._authId !== null && msg.id === this._authId) {
      this._onAuthReply(ws, msg);
      return;
    }
    if (msg.id !== undefined && msg.id !== null && ('ok' in msg || 'error' in msg)) {
      this._onReply(msg);
      return;
    }
    if (msg.ev === 'welcome') {
      if (this._authId !== null && !this.welcome) this._authWelcome = msg; // wait for the auth reply
      else this._onWelcome(msg);
      return;
    }
    if (msg.error && !msg.ev) { this.emit('error', new ChatError(msg.error.code, msg.error.message, msg.error)); return; }
    switch (msg.ev) {
      case 'message': this._onMessage(msg); break;
      case 'presence': this._onPresence(msg); break;
      case 'typing':
      case 'edit':
      case 'delete':
        this._channelEvent(msg.ev, msg);
        break;
      case 'signal': this.emit('signal', msg); break;
      case 'disconnect': this.emit('disconnect', msg); break;
      default: if (msg.ev) this.emit(msg.ev, msg);
    }
  }

  _onAuthReply(ws, msg) {
    this._authId = null;
    if (msg.error) {
      const err = new ChatError(msg.error.code || 'unauthorized', msg.error.message, msg.error);
      this._kill(ws, 'auth failed');
      this.emit('error', err);
      if (err.code === 'unauthorized') this.close(1000, 'unauthorized');
      return;
    }
    const w = this._authWelcome;
    this._authWelcome = null;
    if (w) this._onWelcome(w); // else: the welcome follows
  }

  _onWelcome(msg) {
    this._clearTimer('_welcomeTimer');
    this.welcome = msg;
    this.user = msg.user || null;
    this.session = msg.session || null;
    if (typeof msg.heartbeat_s === 'number' && msg.heartbeat_s > 0) this.heartbeatS = msg.heartbeat_s;
    this._openedAt = this.now();
    const reconnected = this._everOpen === true;
    this._everOpen = true;
    this._setState('open', { reconnected });
    this.emit('welcome', msg);
    this._startHeartbeat();
    this._scheduleTokenRefresh();
    // 1. rejoin channels, 2. resend the outbox, 3. flush queued requests.
    for (const ch of this.channels.values()) if (ch.wanted) this._sendJoin(ch);
    for (const entry of this._outbox) entry.reqId = null;
    this._flushOutbox();
    for (const q of this._queue.splice(0)) this._dispatch(q);
    for (const w of this._openWaiters.splice(0)) w.resolve(msg);
  }

  _onMessage(msg) {
    const ch = this.channels.get(msg.channel);
    if (ch) {
      if (ch._held) { ch._held.push(msg); return; } // delivered after the missed ones
      if (!ch._accept(msg.seq)) return; // duplicate
    }
    this._channelEvent('message', msg);
  }

  /** Deliver a message of `ch` as a 'message' event unless it was seen before. */
  _deliver(ch, m) {
    if (ch._accept(m.seq)) this._channelEvent('message', { ev: 'message', channel: ch.name, ...m });
  }

  /** Forget what a rejoin of `ch` was doing: held live messages, the catch-up, a presence re-read. */
  _stopRecovery(ch) {
    ch._held = null;
    ch._catchup = null;
    ch.catchingUp = false;
    ch._presenceGen += 1;
    ch._presenceRead = null;
  }

  _onPresence(msg) {
    const ch = this.channels.get(msg.channel);
    if (ch) {
      const diff = Array.isArray(msg.joined) || Array.isArray(msg.left);
      if (typeof msg.count === 'number') ch.presenceCount = msg.count;
      if (!diff) {
        // a large room: only the count; the member list is no longer kept up to date
        ch.presenceLarge = true;
        if (ch._presenceRead) { ch._presenceGen += 1; ch._presenceRead = null; }
      } else if (ch._presenceRead) {
        ch._presenceRead.diffs.push(msg); // applied once the list is read
      } else if (ch.presenceLarge && ch.wanted && this.now() >= ch._presenceRetryAt) {
        // diffs again after count-only events: read the list, then apply the diffs
        this._rereadPresence(ch, [msg]);
      } else {
        applyPresenceDiff(ch, msg);
        if (typeof msg.count !== 'number' && !ch.presenceLarge) ch.presenceCount = ch.members.size;
      }
    }
    this._channelEvent('presence', {
      ...msg,
      members: ch ? ch.memberList() : undefined,
      count: ch ? ch.presenceCount : msg.count,
      large: ch ? ch.presenceLarge : undefined,
    });
  }

  /** The member list from a join reply (at most 100 members, `presence_count` users). */
  _setPresence(ch, ok) {
    ch._presenceGen += 1;
    ch._presenceRead = null;
    ch._presenceRetryAt = 0;
    ch.members.clear();
    for (const m of ok.presence || []) ch.members.set(String(m.id), m);
    ch.presenceCount = typeof ok.presence_count === 'number' ? ok.presence_count : ch.members.size;
    ch.presenceLarge = ch.presenceCount > ch.members.size;
    // up to 1,000 present, presence events are diffs: read the whole list once
    if (ch.presenceLarge && ch.presenceCount <= PRESENCE_DIFF_MAX) this._rereadPresence(ch, []);
  }

  /**
   * Read the member list of `ch` with `presence` pages; diffs arriving meanwhile are
   * applied on top of it, in order. A failure keeps `presenceLarge` (tried again at the
   * next diff, 5 s later at the earliest).
   */
  _rereadPresence(ch, diffs) {
    const gen = ++ch._presenceGen;
    const read = { diffs };
    ch._presenceRead = read;
    const done = (members, count, complete) => {
      if (ch._presenceGen !== gen) return;
      ch._presenceRead = null;
      if (members) {
        ch.members.clear();
        for (const m of members) ch.members.set(String(m.id), m);
        if (!read.diffs.some((d) => typeof d.count === 'number')) ch.presenceCount = count;
        ch.presenceLarge = !complete;
      }
      for (const d of read.diffs) applyPresenceDiff(ch, d);
      const ev = {
        channel: ch.name, joined: [], left: [], members: ch.memberList(), count: ch.presenceCount,
        large: ch.presenceLarge, reread: true,
      };
      ch.emit('presence', ev);
      this.emit('presence', ev);
    };
    this.presenceAll(ch.name, { limit: PRESENCE_MAX_LIMIT, maxPages: PRESENCE_MAX_PAGES }).then(
      (r) => done(r.members, r.count, r.complete),
      () => {
        ch._presenceRetryAt = this.now() + 5000;
        done(null);
      },
    );
  }

  _channelEvent(type, ev) {
    const ch = this.channels.get(ev.channel);
    if (ch) ch.emit(type, ev);
    this.emit(type, ev);
  }

  // ------------------------------------------------------------------ requests

  /**
   * Send `{id, op, ...params}` and resolve with the `ok` payload (reject with ChatError).
   * Sent at once when open, else when the connection opens. opts.timeoutMs overrides
   * the default; the timer starts when the frame is sent.
   */
  request(op, params = {}, opts = {}) {
    return new Promise((resolve, reject) => {
      const q = { op, params, opts, resolve, reject };
      if (this.state === 'closed') { reject(new ChatError('closed', 'client closed')); return; }
      if (this.state === 'open') this._dispatch(q); else this._queue.push(q);
    });
  }

  _dispatch(q) {
    const id = this._nextId++;
    const timeoutMs = q.opts.timeoutMs ?? this.options.requestTimeoutMs;
    const pending = { op: q.op, resolve: q.resolve, reject: q.reject, timer: null, entry: q.entry, channel: q.channel };
    if (timeoutMs > 0 && isFinite(timeoutMs)) {
      pending.timer = this._setTimeout(() => {
        if (!this._pending.has(id)) return;
        this._pending.delete(id);
        if (pending.onTimeout) pending.onTimeout(); else pending.reject(new ChatError('timeout', `${q.op} timed out`));
      }, timeoutMs);
    }
    if (q.onTimeout) pending.onTimeout = q.onTimeout;
    this._pending.set(id, pending);
    if (!this._send({ id, op: q.op, ...q.params })) {
      this._pending.delete(id);
      if (pending.timer) this._clearTimeout(pending.timer);
      // publishes (outbox) and joins are sent again by the next welcome anyway
      if (!q.entry && q.op !== 'join') this._queue.push(q);
      return null;
    }
    return id;
  }

  _onReply(msg) {
    const pending = this._pending.get(msg.id);
    if (!pending) return; // late reply after a timeout: ignore
    this._pending.delete(msg.id);
    if (pending.timer) this._clearTimeout(pending.timer);
    if (msg.error) pending.reject(new ChatError(msg.error.code || 'internal', msg.error.message, msg.error));
    else pending.resolve(msg.ok ?? {});
  }

  _failPending(err, includeOutbox) {
    const pend = [...this._pending.values()];
    this._pending.clear();
    for (const p of pend) {
      if (p.timer) this._clearTimeout(p.timer);
      if (p.op === 'publish' && !includeOutbox) continue; // stays in the outbox
      if (p.op === 'join' && !includeOutbox) continue; // rejoined on reconnect
      p.reject(err);
    }
    if (includeOutbox) {
      for (const q of this._queue.splice(0)) q.reject(err);
      for (const e of this._outbox.splice(0)) { if (e.timer) this._clearTimeout(e.timer); e.reject(err); }
      for (const ch of this.channels.values()) {
        for (const w of ch._waiters.splice(0)) w.reject(err);
      }
    }
  }

  // ------------------------------------------------------------------ channels

  /** The Channel object for `name` (created on first use; does not join). */
  channel(name) {
    let ch = this.channels.get(name);
    if (!ch) { ch = new Channel(this, name); this.channels.set(name, ch); }
    return ch;
  }

  /**
   * Join a channel. Options: `limit` (history size). Resolves with the join reply
   * (`{channel, seq, epoch, messages, presence}`), whose messages are marked as seen.
   * The channel stays joined across reconnects until leave().
   */
  join(name, opts = {}) {
    const ch = this.channel(name);
    if (ch.wanted && ch.state === 'joined' && ch.lastJoin) return Promise.resolve(ch.lastJoin);
    const p = new Promise((resolve, reject) => ch._waiters.push({ resolve, reject }));
    if (!ch.wanted) {
      ch.wanted = true;
      ch.joinOptions = opts;
      ch._setState('joining');
      if (this.state === 'open') this._sendJoin(ch);
    }
    return p;
  }

  _sendJoin(ch) {
    const params = { channel: ch.name };
    const rejoin = ch.lastJoin !== undefined;
    if (rejoin) {
      params.since = ch.seq;
      if (ch.epoch !== undefined && ch.epoch !== null) params.epoch = ch.epoch;
      // live messages wait until the missed ones are delivered (kept across a resend)
      if (!ch._held) ch._held = [];
    } else if (ch.joinOptions.limit) {
      params.limit = ch.joinOptions.limit;
    }
    ch._setState('joining');
    const id = this._dispatch({
      op: 'join', params, opts: {}, channel: ch.name,
      resolve: (ok) => this._onJoined(ch, ok, rejoin),
      reject: (err) => this._onJoinFailed(ch, err),
    });
    ch._joinReq = id;
  }

  _onJoined(ch, ok, rejoin) {
    if (!ch.wanted) return;
    ch._catchup = null; // a catch-up of an earlier reply is superseded
    ch.catchingUp = false;
    const messages = (ok.messages || []).map((m) => ({ channel: ch.name, ...m }));
    if (ok.epoch !== undefined) ch.epoch = ok.epoch;
    this._setPresence(ch, ok);
    const reply = { ...ok, messages };
    ch.lastJoin = reply;
    if (rejoin && ok.recovered === false) {
      ch._resetSeen(typeof ok.seq === 'number' ? ok.seq : 0);
      for (const m of messages) ch._accept(m.seq);
      const ev = { channel: ch.name, messages, seq: ok.seq, epoch: ok.epoch, presence: ok.presence || [] };
      ch.emit('reset', ev);
      this.emit('reset', ev);
    } else if (rejoin) {
      // recovered: deliver what was missed, deduplicated, in seq order
      for (const m of messages) this._deliver(ch, m);
      if (ok.more && messages.length) {
        // the rest did not fit the reply: fetch it before anything live
        this._emitInitialPresence(ch);
        this._catchUp(ch, reply, typeof ok.seq === 'number' ? ok.seq : undefined);
        return;
      }
      if (typeof ok.seq === 'number' && ok.seq > ch.seq) ch.seq = ok.seq;
    } else {
      for (const m of messages) ch._accept(m.seq);
      if (typeof ok.seq === 'number' && ok.seq > ch.seq) ch.seq = ok.seq;
    }
    this._emitInitialPresence(ch);
    this._joinDone(ch, reply, rejoin);
  }

  _emitInitialPresence(ch) {
    const ev = {
      channel: ch.name, joined: [], left: [], members: ch.memberList(), count: ch.presenceCount,
      large: ch.presenceLarge, initial: true,
    };
    ch.emit('presence', ev);
    this.emit('presence', ev);
  }

  /** A (re)join is complete: deliver the held live messages, then 'joined'. */
  _joinDone(ch, reply, rejoin) {
    const held = ch._held;
    ch._held = null;
    if (held) {
      held.sort((a, b) => (typeof a.seq === 'number' && typeof b.seq === 'number' ? a.seq - b.seq : 0));
      for (const m of held) this._deliver(ch, m);
    }
    ch._setState('joined');
    const joinedEv = { channel: ch.name, reply, rejoin };
    ch.emit('joined', joinedEv);
    this.emit('joined', joinedEv);
    for (const w of ch._waiters.splice(0)) w.resolve(reply);
  }

  /**
   * The missed messages after a recovered rejoin reply with `more:true`: `history
   * after=` pages from the last one delivered until a page has no `more` (and the
   * reply's top is reached), each message delivered once, in order. The channel stays
   * 'joining' (`catchingUp`) meanwhile; live messages stay held. A lost connection
   * ends it (the next rejoin asks `since` the last one delivered); an error reply joins
   * again on this connection.
   */
  async _catchUp(ch, reply, top) {
    const token = {};
    ch._catchup = token;
    ch.catchingUp = true;
    const ws = this.ws;
    const alive = () => ch._catchup === token && ch.wanted && ws !== null && this.ws === ws;
    try {
      await this.historyAfter(ch.name, ch.seq, {
        limit: HISTORY_MAX_LIMIT,
        until: top,
        onPage: (messages) => {
          if (!alive()) return false;
          for (const m of messages) this._deliver(ch, m);
          return true;
        },
      });
    } catch (err) {
      if (!alive()) return;
      ch._catchup = null;
      ch.catchingUp = false;
      if (err.code === 'disconnected' || err.code === 'closed') return;
      // e.g. a timeout or `unavailable`: ask again with `since`, held messages kept
      this._setTimeout(() => { if (ch.wanted && this.ws === ws && this.state === 'open' && !ch._catchup) this._sendJoin(ch); }, 1000);
      return;
    }
    if (!alive()) return;
    ch._catchup = null;
    ch.catchingUp = false;
    if (typeof top === 'number' && top > ch.seq) ch.seq = top;
    this._joinDone(ch, reply, true);
  }

  _onJoinFailed(ch, err) {
    if (err.code === 'disconnected') return; // retried on reconnect
    if (err.code === 'timeout' && this.state === 'open') { this._sendJoin(ch); return; }
    if (RETRYABLE.has(err.code) && this.state === 'open') {
      this._setTimeout(() => { if (ch.wanted && this.state === 'open') this._sendJoin(ch); }, 1000);
      return;
    }
    ch.wanted = false;
    this._stopRecovery(ch);
    ch._setState('failed');
    ch.emit('error', err);
    for (const w of ch._waiters.splice(0)) w.reject(err);
  }

  /** Leave a channel (stops rejoining it). */
  leave(name) {
    const ch = this.channels.get(name);
    if (!ch) return Promise.resolve({});
    ch.wanted = false;
    ch.lastJoin = undefined;
    this._stopRecovery(ch);
    ch.members.clear();
    ch.presenceCount = 0;
    ch.presenceLarge = false;
    ch._setState('left');
    for (const w of ch._waiters.splice(0)) w.reject(new ChatError('closed', 'left the channel'));
    if (this.state !== 'open') return Promise.resolve({});
    return this.request('leave', { channel: name }).catch(() => ({}));
  }

  // ------------------------------------------------------------------ publish / outbox

  /**
   * Publish `data` (a JSON object) to a channel. Resolves with `{seq, ts, duplicate?}`
   * once the server stored it. Survives reconnects: resent with the same client_id.
   * opts: `clientId` (default: generated), `timeoutMs` (overall, default publishTimeoutMs).
   * The returned promise has `.clientId`.
   */
  publish(channel, data, opts = {}) {
    const clientId = opts.clientId || makeClientId();
    let entry;
    const p = new Promise((resolve, reject) => {
      entry = { channel, data, clientId, resolve, reject, reqId: null, tries: 0 };
    });
    const overall = opts.timeoutMs ?? this.options.publishTimeoutMs;
    if (overall > 0 && isFinite(overall)) {
      entry.timer = this._setTimeout(() => {
        this._dropEntry(entry);
        entry.reject(new ChatError('timeout', 'publish not acknowledged in time'));
      }, overall);
    }
    if (this.state === 'closed') { entry.reject(new ChatError('closed', 'client closed')); p.clientId = clientId; return p; }
    this._outbox.push(entry);
    this._flushOutbox();
    p.clientId = clientId;
    return p;
  }

  /** Publishes waiting for an acknowledgement: [{channel, data, clientId}]. */
  get outbox() {
    return this._outbox.map(({ channel, data, clientId }) => ({ channel, data, clientId }));
  }

  _dropEntry(entry) {
    const i = this._outbox.indexOf(entry);
    if (i >= 0) this._outbox.splice(i, 1);
    if (entry.timer) this._clearTimeout(entry.timer);
    if (entry.reqId != null && this._pending.has(entry.reqId)) {
      const p = this._pending.get(entry.reqId);
      if (p.timer) this._clearTimeout(p.timer);
      this._pending.delete(entry.reqId);
    }
  }

  _flushOutbox() {
    if (this.state !== 'open') return;
    for (const entry of this._outbox) {
      if (entry.reqId != null || entry.waiting) continue;
      this._sendEntry(entry);
    }
  }

  _sendEntry(entry) {
    entry.tries += 1;
    const params = { channel: entry.channel, data: entry.data, client_id: entry.clientId };
    entry.reqId = this._dispatch({
      op: 'publish', params, opts: {}, entry,
      resolve: (ok) => {
        this._dropEntry(entry);
        entry.resolve(ok);
      },
      reject: (err) => {
        entry.reqId = null;
        if (RETRYABLE.has(err.code) && entry.tries < 8) {
          // nothing was stored: try again later with the same client_id
          entry.waiting = true;
          const delay = backoffDelay(entry.tries, { baseMs: 250, maxMs: 5000 }, this.random) + 100;
          this._setTimeout(() => { entry.waiting = false; this._flushOutbox(); }, delay);
          return;
        }
        this._dropEntry(entry);
        entry.reject(err);
      },
      // no reply in time: the connection may be dead; keep the entry and resend later
      // (resending is safe: the server deduplicates by client_id)
      onTimeout: () => { entry.reqId = null; this._checkAlive(); this._flushOutbox(); },
    });
  }

  // ------------------------------------------------------------------ other ops

  /**
   * One page of messages, ascending: `{messages, more}`. `more` is true when the
   * server's byte budget cut the page short: ask again from its edge (`before` = the
   * first seq of the page, or `after` = its last).
   */
  history(channel, { before, after, limit } = {}) {
    const params = { channel };
    if (before !== undefined) params.before = before;
    if (after !== undefined) params.after = after;
    if (limit !== undefined) params.limit = limit;
    return this.request('history', params).then((ok) => ({
      ...ok,
      messages: (ok.messages || []).map((m) => ({ channel, ...m })),
      more: ok.more === true,
    }));
  }

  /**
   * Every message after seq `after`, with `history after=` pages of `limit` (default and
   * at most 200) until a page has no `more` and, with `until`, reaches that seq (or comes
   * back empty). `onPage(messages, page)` is called with each page; returning false
   * stops. Resolves with `{messages, last, pages, stopped}` (`messages`: all of them,
   * or [] when onPage is given; `last`: the last seq read).
   */
  async historyAfter(channel, after, { limit = HISTORY_MAX_LIMIT, until, onPage } = {}) {
    const all = [];
    let last = after;
    let pages = 0;
    for (;;) {
      const page = await this.history(channel, { after: last, limit: Math.min(limit, HISTORY_MAX_LIMIT) });
      pages += 1;
      const msgs = page.messages;
      if (onPage) {
        if (onPage(msgs, page) === false) return { messages: all, last, pages, stopped: true };
      } else {
        all.push(...msgs);
      }
      const top = msgs.length ? msgs[msgs.length - 1].seq : undefined;
      if (typeof top !== 'number' || top <= last) break;
      last = top;
      if (!page.more && !(typeof until === 'number' && last < until)) break;
    }
    return { messages: all, last, pages, stopped: false };
  }

  /**
   * One page of who is present, ordered by name: `{members, count, next}`. `after` is
   * the `next` cursor of the previous page (absent on the last page); `limit` ≤ 500
   * (server default 100).
   */
  presence(channel, { after, limit } = {}) {
    const params = { channel };
    if (after !== undefined && after !== null) params.after = after;
    if (limit !== undefined) params.limit = limit;
    return this.request('presence', params);
  }

  /**
   * Everyone present, page after page (`limit` per page, default 500), at most
   * `maxPages` pages (default 10): `{members, count, complete, next?, pages}`;
   * `complete` is false when maxPages stopped it (`next` continues from there).
   */
  async presenceAll(channel, { limit = PRESENCE_MAX_LIMIT, maxPages = PRESENCE_MAX_PAGES } = {}) {
    const members = new Map();
    let after;
    let count;
    let pages = 0;
    for (;;) {
      const page = await this.presence(channel, { after, limit });
      pages += 1;
      for (const m of page.members || []) members.set(String(m.id), m);
      if (typeof page.count === 'number') count = page.count;
      const list = [...members.values()];
      if (!page.next) return { members: list, count: count ?? list.length, complete: true, pages };
      if (pages >= maxPages) return { members: list, count: count ?? list.length, complete: false, next: page.next, pages };
      after = page.next;
    }
  }

  /** Send a typing notice, at most once per typingThrottleMs per channel. Returns true if sent. */
  typing(channel) {
    const now = this.now();
    const last = this._typingAt.get(channel) || -Infinity;
    if (now - last < this.options.typingThrottleMs || this.state !== 'open') return false;
    this._typingAt.set(channel, now);
    this.request('typing', { channel }).catch(() => {});
    return true;
  }

  read(channel, seq) { return this.request('read', { channel, seq }); }
  channelsList() { return this.request('channels').then((ok) => ok.channels || []); }
  edit(channel, seq, data) { return this.request('edit', { channel, seq, data }); }
  deleteMessage(channel, seq) { return this.request('delete', { channel, seq }); }
  signal(to, call, data) { return this.request('signal', { to: String(to), call, data }); }
  ping(opts) { return this.request('ping', {}, opts); }

  // ------------------------------------------------------------------ token refresh

  /** Seconds since the epoch when the JWT `token` expires, or null. */
  static tokenExpiry(token) {
    try {
      const part = String(token).split('.')[1];
      const json = globalThis.atob(part.replace(/-/g, '+').replace(/_/g, '/'));
      const exp = JSON.parse(json).exp;
      return typeof exp === 'number' ? exp : null;
    } catch (_) { return null; }
  }

  /**
   * With a token function: fetch a fresh token shortly before the one in force expires
   * (a fifth of its remaining life before, at most a minute) and send it with `auth`.
   */
  _scheduleTokenRefresh() {
    this._clearTimer('_refreshTimer');
    if (typeof this.options.token !== 'function' || !this._token) return;
    const exp = ChatClient.tokenExpiry(this._token);
    if (exp === null) return;
    const left = exp * 1000 - this.now();
    const margin = Math.min(60000, Math.max(1000, left / 5));
    const wait = Math.max(0, Math.min(left - margin, 2 ** 31 - 1));
    this._refreshTimer = this._setTimeout(() => {
      this._refreshTimer = null;
      this._refreshToken();
    }, wait);
  }

  async _refreshToken() {
    if (this.state !== 'open') return;
    let token;
    try { token = await this.options.token(); } catch (err) { this.emit('error', err); }
    if (this.state !== 'open' || !token || token === this._token) return;
    try {
      await this.request('auth', { token });
      this._token = token;
      this._authFailures = 0;
      this.emit('token', { exp: ChatClient.tokenExpiry(token) });
      this._scheduleTokenRefresh();
    } catch (err) {
      this.emit('error', err);
    }
  }

  // ------------------------------------------------------------------ heartbeat

  _startHeartbeat() {
    this._stopHeartbeat();
    const tick = () => {
      this._heartbeatTimer = this._setTimeout(tick, Math.max(250, (this.heartbeatS * 1000) / 2));
      if (this.state !== 'open' || this._pinging) return;
      if (this.now() - this._lastFrameAt >= this.heartbeatS * 2000) this._checkAlive();
    };
    this._heartbeatTimer = this._setTimeout(tick, Math.max(250, (this.heartbeatS * 1000) / 2));
  }

  _stopHeartbeat() { this._clearTimer('_heartbeatTimer'); this._pinging = false; }

  /**
   * Send a ping; no answer within heartbeat_s (max requestTimeoutMs) kills the connection
   * (and a reconnect follows). Useful when a page becomes visible again after a sleep.
   */
  checkAlive() { this._checkAlive(); }

  _checkAlive() {
    if (this.state !== 'open' || this._pinging) return;
    const ws = this.ws;
    this._pinging = true;
    const timeoutMs = Math.min(this.options.requestTimeoutMs, Math.max(1000, this.heartbeatS * 1000));
    this.ping({ timeoutMs }).then(
      () => { this._pinging = false; },
      (err) => {
        this._pinging = false;
        if (err.code === 'timeout' && ws && ws === this.ws) this._kill(ws, 'heartbeat timeout');
      },
    );
  }
}

export default ChatClient;
