// /admin: live counts over the WebSocket (`admin_stats`), the busiest channels,
// connected users with kick and ban buttons, the audit log and the effective
// configuration (secrets hidden). Role admin only; others are sent to log in.
import { ChatClient } from './chat-client.js';
import { api, h, clear, fmtDateTime, fmtInt, toast, whoami, bindConnectionPill } from './common.js';

const $ = (id) => document.getElementById(id);
const STATS_MS = 2000;
const LISTS_MS = 5000;
let last = null; // previous stats, for the message rate

function notice(text) {
  const n = $('notice');
  n.textContent = text;
  n.classList.toggle('hidden', !text);
}

function renderStats(s) {
  $('c-connections').textContent = fmtInt(s.connections);
  $('c-users').textContent = fmtInt(s.users);
  $('c-channels').textContent = fmtInt(s.channels);
  $('c-overflows').textContent = fmtInt(s.overflows);
  if (last && s.ts > last.ts) {
    const rate = ((s.messages_out - last.messages_out) * 1000) / (s.ts - last.ts);
    $('c-rate').textContent = rate.toFixed(rate < 10 ? 1 : 0);
  }
  last = s;
  const body = clear($('busiest'));
  for (const b of s.busiest) {
    body.appendChild(h('tr', null, h('td', null, b.channel), h('td', null, fmtInt(b.members)), h('td', null, String(b.seq))));
  }
  if (!s.busiest.length) body.appendChild(h('tr', null, h('td', { colspan: 3, class: 'muted' }, 'No channels yet')));
  $('updated').textContent = `updated ${new Date(s.ts).toLocaleTimeString()}`;
}

async function act(what, user, path, method, body) {
  try {
    await api(method, path, body);
    toast(`${what}: ${user.name}`, 'info');
    await Promise.all([loadUsers(), loadAudit()]);
  } catch (err) {
    toast(`${what} failed: ${err.message}`, 'error');
  }
}

async function loadUsers() {
  const r = await api('GET', '/api/admin/connections?limit=200');
  const body = clear($('users'));
  for (const u of r.users) {
    const id = encodeURIComponent(u.id);
    body.appendChild(h('tr', { dataset: { user: u.id } },
      h('td', null, u.name), h('td', { class: 'muted' }, u.id), h('td', null, fmtInt(u.connections)),
      h('td', { class: 'actions' },
        h('button', { class: 'btn btn-ghost', type: 'button', 'aria-label': `Kick ${u.name}`,
          onclick: () => act('Kicked', u, `/api/admin/users/${id}/kick`, 'POST', { reason: 'kicked from the admin console' }) }, 'Kick'),
        h('button', { class: 'btn btn-danger', type: 'button', 'aria-label': `Ban ${u.name}`,
          onclick: () => {
            const reason = window.prompt(`Ban ${u.name}? Reason:`, '');
            if (reason !== null) act('Banned', u, `/api/admin/users/${id}/ban`, 'PUT', { reason });
          } }, 'Ban'))));
  }
  if (!r.users.length) body.appendChild(h('tr', null, h('td', { colspan: 4, class: 'muted' }, 'Nobody is connected')));
}

async function loadAudit() {
  const r = await api('GET', '/api/admin/audit?limit=50');
  const body = clear($('audit'));
  for (const e of r.entries) {
    body.appendChild(h('tr', null, h('td', null, fmtDateTime(e.at)), h('td', null, e.actor), h('td', null, e.action),
      h('td', null, e.target), h('td', null, e.reason)));
  }
  if (!r.entries.length) body.appendChild(h('tr', null, h('td', { colspan: 5, class: 'muted' }, 'No actions yet')));
}

async function loadConfig() {
  const r = await api('GET', '/api/admin/config');
  const body = clear($('config'));
  for (const [k, v] of Object.entries(r.settings)) {
    body.appendChild(h('tr', null, h('td', null, k), h('td', null, typeof v === 'string' ? v : JSON.stringify(v))));
  }
}

async function main() {
  const me = await whoami();
  if (!me || me.role !== 'admin') {
    notice(me ? 'This page is for admins.' : 'Log in as an admin on the chat page first.');
    return;
  }
  $('userbox').textContent = me.name;
  const client = new ChatClient();
  bindConnectionPill(client, $('conn'));
  client.connect();
  const tick = async () => {
    try {
      renderStats(await client.request('admin_stats'));
    } catch (err) {
      if (client.state === 'open') notice(`Live counts: ${err.message}`);
    }
  };
  client.on('welcome', tick);
  setInterval(tick, STATS_MS);
  const lists = () => Promise.all([loadUsers(), loadAudit()]).catch((err) => notice(err.message));
  await Promise.all([lists(), loadConfig().catch((err) => notice(err.message))]);
  setInterval(lists, LISTS_MS);
}

main();
