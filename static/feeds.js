// Shared start-up of the feed dashboards (ticker, sports, map).
import { ChatClient } from './chat-client.js';
import { whoami, bindConnectionPill, h, clear } from './common.js';

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
