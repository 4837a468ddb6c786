// Who is here and who is typing: the typing line under the messages and the
// members panel (with its toggle button) of the open channel. In a large room (more
// users present than the client knows by name) the panel shows "N online" and the
// first members by name, read a page at a time with the `presence` op.
import { h, clear, avatar } from '../common.js';
import { $, S, userName } from './state.js';
import { learnUser, renderSidebar } from './sidebar.js';

const TYPING_SHOW_MS = 4000;
const MEMBER_PAGE = 100;
const PAGE_REFRESH_MS = 30000;

// channel -> {members, next, at, loading}: the pages of a large room read so far
const pages = new Map();

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

const fmtCount = (n) => Number(n || 0).toLocaleString('en-US');

/**
 * Read the first page of the members of a large room (again, every PAGE_REFRESH_MS
 * while only the first page is shown), or with `more` the next page.
 */
async function loadMemberPage(channel, more = false) {
  let entry = pages.get(channel);
  if (entry && entry.loading) return;
  if (!entry) { entry = { members: [], next: undefined, at: 0, pages: 0 }; pages.set(channel, entry); }
  entry.loading = true;
  try {
    const page = await S.client.presence(channel, { limit: MEMBER_PAGE, after: more ? entry.next : undefined });
    const got = page.members || [];
    for (const m of got) learnUser(m);
    if (more) {
      const known = new Set(entry.members.map((m) => String(m.id)));
      entry.members.push(...got.filter((m) => !known.has(String(m.id))));
      entry.pages += 1;
    } else {
      entry.members = [...got];
      entry.pages = 1;
    }
    entry.next = page.next;
  } catch (_) {
    // keep what is shown; the first page is tried again after PAGE_REFRESH_MS
  } finally {
    entry.loading = false;
    if (!more) entry.at = Date.now();
  }
  if (pages.get(channel) === entry && channel === S.active) renderMembers();
}

function memberRow(m) {
  return h('div', { class: 'member' },
    avatar(m, 'sm'), h('span', { class: 'name' }, m.name || userName(m.id)),
    String(m.id) === S.me.id ? h('span', { class: 'muted small' }, '(you)') : null,
    h('span', { class: 'spacer' }), h('span', { class: 'dot on', title: 'online' }));
}

export function renderMembers() {
  const list = $('member-list');
  const ch = S.active ? S.client.channel(S.active) : null;
  const count = ch ? ch.presenceCount : 0;
  $('member-count').textContent = fmtCount(count);
  if (ch && ch.presenceLarge) {
    // not everyone is known by name: the count, and the first members by name
    const entry = pages.get(ch.name);
    if (!entry || (!entry.loading && entry.pages <= 1 && Date.now() - entry.at > PAGE_REFRESH_MS)) loadMemberPage(ch.name);
    const members = entry && entry.members.length ? entry.members : ch.memberList();
    members.sort((a, b) => String(a.name).localeCompare(String(b.name)));
    const summary = h('div', { class: 'muted small member-summary' }, `${fmtCount(count)} online`,
      members.length ? ` · showing ${fmtCount(members.length)}` : '');
    clear(list).append(summary, ...members.map(memberRow));
    if (entry && entry.next && members === entry.members) {
      list.append(h('button', {
        type: 'button', class: 'btn btn-ghost small', disabled: entry.loading,
        onclick: () => loadMemberPage(ch.name, true),
      }, entry.loading ? 'Loading…' : 'Show more'));
    }
    return;
  }
  if (ch) pages.delete(ch.name);
  const members = ch ? ch.memberList() : [];
  members.sort((a, b) => String(a.name).localeCompare(String(b.name)));
  clear(list).append(...members.map(memberRow));
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
