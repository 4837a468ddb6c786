// State of the chat page shared by its modules: who is logged in, the client, the
// known rooms, DMs, unread counts, user names, channel views, typing, the open channel.
// Also the small lookups on it (user names, channel titles).

export const $ = (id) => document.getElementById(id);

export const S = {
  me: null,
  client: null,
  rooms: new Map(), // channel -> {channel, name, private}
  dms: new Map(), // channel -> {channel, otherId}
  unread: new Map(), // channel -> count
  users: new Map(), // id -> name
  views: new Map(), // channel -> view
  typing: new Map(), // channel -> Map(userId -> {name, until})
  active: null,
};

export const userName = (id) => S.users.get(String(id)) || `user ${id}`;

export function otherOfDm(channel) {
  const ids = channel.slice(3).split(',');
  const mine = String(S.me.id);
  return ids[0] === mine ? ids[1] : ids[0];
}

export function channelTitle(channel) {
  if (channel.startsWith('dm:')) return '@' + userName(otherOfDm(channel));
  return '#' + channel.replace(/^room:/, '');
}
