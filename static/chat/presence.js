// Who is here and who is typing: the typing line under the messages and the
// members panel (with its toggle button) of the open channel.
import { h, clear, avatar } from '../common.js';
import { $, S, userName } from './state.js';
import { learnUser, renderSidebar } from './sidebar.js';

const TYPING_SHOW_MS = 4000;

export function onTyping(e) {
  if (!e.user || String(e.user.id) === S.me.id) return;
  learnUser(e.user);
  if (!S.typing.has(e.channel)) S.typing.set(e.channel, new Map());
  S.typing.get(e.channel).set(String(e.user.id), { name: e.user.name, until: Date.now() + TYPING_SHOW_MS });
  if (e.channel === S.active) renderTyping();
}

export function renderTyping() {
  const el = $('typing');
  const t = S.active && S.typing.get(S.active);
  const now = Date.now();
  const names = [];
  if (t) for (const [id, x] of t) { if (x.until > now) names.push(x.name); else t.delete(id); }
  let text = '';
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = 'Several people are typing…';
  if (el.textContent !== text) el.textContent = text;
}

export function onPresence(e) {
  for (const m of e.joined || []) learnUser(m);
  if (e.channel === S.active) renderMembers();
  if (e.channel.startsWith('dm:')) renderSidebar();
}

export function renderMembers() {
  const list = $('member-list');
  const members = S.active ? S.client.channel(S.active).memberList() : [];
  members.sort((a, b) => String(a.name).localeCompare(String(b.name)));
  $('member-count').textContent = String(members.length);
  clear(list).append(...members.map((m) => h('div', { class: 'member' },
    avatar(m, 'sm'), h('span', { class: 'name' }, m.name || userName(m.id)),
    String(m.id) === S.me.id ? h('span', { class: 'muted small' }, '(you)') : null,
    h('span', { class: 'spacer' }), h('span', { class: 'dot on', title: 'online' }))));
  if (!members.length) list.append(h('div', { class: 'muted small' }, 'Nobody online.'));
}

/** Wire the button that shows or hides the members panel. */
export function wirePresence() {
  $('members-btn').onclick = () => {
    const m = $('members');
    if (window.matchMedia('(max-width: 980px)').matches) {
      m.classList.toggle('open');
      $('members-btn').setAttribute('aria-expanded', String(m.classList.contains('open')));
    } else {
      m.classList.toggle('hidden');
      $('chat-view').style.gridTemplateColumns = m.classList.contains('hidden') ? '270px 1fr' : '';
    }
  };
}
