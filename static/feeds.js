// Shared start-up of the feed dashboards (ticker, sports, map).
import { ChatClient } from './chat-client.js';
import { whoami, bindConnectionPill, h, clear, feedChannels } from './common.js';

/** Connects (cookie when logged in, anonymous otherwise) and fills the header. */
export async function setupFeedPage() {
  let me = null;
  try { me = await whoami(); } catch (_) { /* server down: the client retries */ }
  const box = document.getElementById('userbox');
  clear(box).append(me ? h('span', { class: 'muted hide-mobile' }, `Signed in as ${me.name}`) : h('a', { href: '/', class: 'btn btn-ghost' }, 'Log in'));
  const client = new ChatClient();
  window.chatClient = client;
  bindConnectionPill(client, document.getElementById('conn'));
  client.connect().catch(() => {});
  return { me, client };
}

export function showNotice(content) {
  const n = document.getElementById('notice');
  clear(n);
  if (!content) { n.classList.add('hidden'); return; }
  n.append(...[].concat(content));
  n.classList.remove('hidden');
}

/** Restart a CSS animation class on an element. */
export function flash(el, cls) {
  el.classList.remove('flash-up', 'flash-down', 'bump', 'new');
  void el.offsetWidth; // reflow so that the animation starts again
  el.classList.add(cls);
}

/** Last data object of a join reply or reset (messages ascending). */
export function lastData(reply) {
  const msgs = (reply && reply.messages) || [];
  return msgs.length ? msgs[msgs.length - 1] : null;
}

/**
 * Discover feed channels of one namespace via GET /api/feeds and call onNew(channels)
 * with the ones not seen before. The server lists only feeds that carried a value, so
 * the list is polled: every 2 s while it is empty, then every 30 s for new feeds.
 */
export function watchFeeds(namespace, onNew, { onError, onEmpty } = {}) {
  const seen = new Set();
  let failures = 0;
  const poll = async () => {
    let next = 30000;
    try {
      const list = (await feedChannels(namespace)).sort();
      failures = 0;
      const fresh = list.filter((c) => !seen.has(c));
      for (const c of fresh) seen.add(c);
      if (fresh.length) onNew(fresh);
      if (!seen.size) { next = 2000; if (onEmpty) onEmpty(); }
    } catch (ex) {
      failures += 1;
      next = Math.min(30000, 2000 * failures);
      if (onError) onError(ex);
    }
    setTimeout(poll, next);
  };
  poll();
}
