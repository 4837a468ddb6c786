// /sports: live scores and an event timeline. Matches come from GET /api/feeds (sports:<match>).
import { h, clear, icon } from './common.js';
import { setupFeedPage, showNotice, flash, watchFeeds } from './feeds.js';

const MAX_EVENTS = 200;
const matches = new Map(); // channel -> {el, parts, events: [], state}
let selected = null;

const STATUS_TEXT = { scheduled: 'Scheduled', live: 'Live', halftime: 'Half-time', full_time: 'Full time' };

function makeMatch(channel) {
  const parts = {
    home: h('span', { class: 'team home' }, '–'),
    away: h('span', { class: 'team away' }, '–'),
    score: h('span', { class: 'score', 'aria-live': 'polite' }, '– : –'),
    status: h('span', { class: 'status' }, '…'),
    minute: h('span', null, ''),
  };
  const el = h('button', {
    type: 'button', class: 'card match', 'aria-pressed': 'false', dataset: { channel },
    onclick: () => select(channel),
  }, h('div', { class: 'match-row' }, parts.home, parts.score, parts.away),
  h('div', { class: 'match-meta' }, parts.status, parts.minute));
  const m = { channel, el, parts, events: [], state: null };
  matches.set(channel, m);
  return m;
}

function teamName(state, side) {
  return (state && state[side]) || (side === 'home' ? 'Home' : 'Away');
}

function renderScore(m, { animate }) {
  const s = m.state;
  if (!s) return;
  const { parts } = m;
  parts.home.textContent = teamName(s, 'home');
  parts.away.textContent = teamName(s, 'away');
  const sc = s.score || {};
  const text = `${sc.home ?? 0} : ${sc.away ?? 0}`;
  if (parts.score.textContent !== text) {
    parts.score.textContent = text;
    if (animate) flash(parts.score, 'bump');
  }
  parts.status.textContent = STATUS_TEXT[s.status] || String(s.status || '');
  parts.status.className = `status ${s.status === 'live' ? 'live' : s.status === 'halftime' ? 'halftime' : ''}`;
  parts.minute.textContent = s.status === 'live' && typeof s.minute === 'number' ? `${s.minute}'` : '';
  m.el.setAttribute('aria-label', `${teamName(s, 'home')} ${sc.home ?? 0}, ${teamName(s, 'away')} ${sc.away ?? 0}, ${parts.status.textContent}`);
}

function describe(ev, state) {
  const team = ev.team ? teamName(state, ev.team) : '';
  const who = ev.player ? String(ev.player) : '';
  switch (ev.type) {
    case 'goal': return { icon: icon('ball', 16), title: `Goal! ${who}${team ? ` (${team})` : ''}`, sub: ev.score ? `${ev.score.home ?? 0} – ${ev.score.away ?? 0}` : '' };
    case 'card': return { icon: h('span', { class: ev.color === 'red' ? 'card-red' : 'card-yellow', 'aria-label': `${ev.color || 'yellow'} card` }), title: `${ev.color === 'red' ? 'Red' : 'Yellow'} card: ${who}${team ? ` (${team})` : ''}` };
    case 'sub': return { icon: icon('swap', 16), title: `Substitution${team ? ` (${team})` : ''}${who ? `: ${who}` : ''}` };
    case 'kickoff': return { icon: icon('whistle', 16), title: 'Kick-off' };
    case 'halftime': return { icon: icon('whistle', 16), title: 'Half-time' };
    case 'fulltime': return { icon: icon('whistle', 16), title: 'Full time' };
    default: return { icon: '•', title: ev.type ? String(ev.type) : 'Update' };
  }
}

function timelineItem(msg, state, isNew) {
  const ev = msg.data || {};
  const d = describe(ev, state);
  return h('li', { class: `tl${ev.team === 'away' ? ' side-away' : ''}${isNew ? ' new' : ''}`, dataset: { seq: msg.seq ?? '' } },
    h('span', { class: 'tl-min' }, typeof ev.minute === 'number' ? `${ev.minute}'` : ''),
    h('span', { class: `tl-icon tl-${ev.type || 'other'}` }, d.icon),
    h('span', { class: 'tl-text' }, d.title,
      d.sub ? h('small', null, d.sub) : null,
      ev.text ? h('small', null, String(ev.text)) : null));
}

const shown = (msg) => msg.data && msg.data.type !== 'clock';

function renderTimeline() {
  const m = selected && matches.get(selected);
  const list = document.getElementById('timeline');
  clear(list);
  if (!m) return;
  const s = m.state || {};
  document.getElementById('tl-title').textContent = `${teamName(s, 'home')} ${s.score?.home ?? 0} – ${s.score?.away ?? 0} ${teamName(s, 'away')}`;
  document.getElementById('tl-sub').textContent = `${STATUS_TEXT[s.status] || ''}${s.status === 'live' && typeof s.minute === 'number' ? ` · ${s.minute}'` : ''}${s.status === 'scheduled' && s.text ? ` · ${s.text}` : ''}`;
  const evs = m.events.filter(shown).reverse();
  list.append(...evs.map((e) => timelineItem(e, s, false)));
  if (!evs.length) list.append(h('li', { class: 'muted small' }, 'No events yet.'));
}

function select(channel) {
  selected = channel;
  for (const m of matches.values()) m.el.setAttribute('aria-pressed', String(m.channel === channel));
  renderTimeline();
  history.replaceState(null, '', `#${encodeURIComponent(channel)}`);
}

function addEvents(channel, msgs, { live }) {
  const m = matches.get(channel);
  if (!m) return;
  for (const msg of msgs) {
    if (!msg || !msg.data) continue;
    if (msg.seq !== undefined && m.events.some((e) => e.seq === msg.seq)) continue;
    m.events.push(msg);
  }
  m.events.sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
  if (m.events.length > MAX_EVENTS) m.events.splice(0, m.events.length - MAX_EVENTS);
  const last = m.events[m.events.length - 1];
  if (last) m.state = last.data;
  renderScore(m, { animate: live });
  if (channel === selected) {
    if (live && msgs.length === 1 && shown(msgs[0])) {
      const list = document.getElementById('timeline');
      if (list.firstElementChild && !list.firstElementChild.dataset.seq) clear(list);
      list.prepend(timelineItem(msgs[0], m.state, true));
      const s = m.state || {};
      document.getElementById('tl-title').textContent = `${teamName(s, 'home')} ${s.score?.home ?? 0} – ${s.score?.away ?? 0} ${teamName(s, 'away')}`;
      document.getElementById('tl-sub').textContent = `${STATUS_TEXT[s.status] || ''}${s.status === 'live' && typeof s.minute === 'number' ? ` · ${s.minute}'` : ''}`;
    } else {
      renderTimeline();
    }
  }
  document.getElementById('updated').textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

async function main() {
  const { client } = await setupFeedPage();
  const list = document.getElementById('matches');
  const fromHash = decodeURIComponent(location.hash.slice(1));
  client.on('message', (msg) => addEvents(msg.channel, [msg], { live: true }));
  client.on('reset', (e) => {
    const m = matches.get(e.channel);
    if (m) m.events = [];
    addEvents(e.channel, e.messages, { live: false });
  });
  document.addEventListener('keydown', (e) => {
    if (e.target.closest && e.target.closest('input, textarea')) return;
    if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
    const keys = [...matches.keys()];
    const i = keys.indexOf(selected);
    const next = keys[(i + (e.key === 'ArrowDown' ? 1 : keys.length - 1)) % keys.length];
    if (next) { e.preventDefault(); select(next); matches.get(next).el.focus(); }
  });
  const join = (ch) => client.join(ch).then(
    (reply) => addEvents(ch, reply.messages || [], { live: false }),
    (err) => {
      const m = matches.get(ch);
      if (m) m.parts.status.textContent = `unavailable: ${err.message}`;
      if (err.code === 'unauthorized' || err.code === 'forbidden') showNotice(['Scores need an account here. ', h('a', { href: '/' }, 'Log in')]);
    });
  watchFeeds('sports', (channels) => {
    showNotice(null);
    for (const ch of channels) {
      const m = makeMatch(ch);
      const after = [...list.children].find((el) => el.dataset.channel > ch);
      list.insertBefore(m.el, after || null);
      join(ch);
    }
    if (!selected) select(matches.has(fromHash) ? fromHash : [...matches.keys()].sort()[0]);
  }, {
    onEmpty: () => showNotice('Waiting for matches…'),
    onError: (ex) => { if (!matches.size) showNotice(`Could not load the list of feeds: ${ex.message}`); },
  });
}

main();
