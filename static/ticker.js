// /ticker: live quote board. Symbols come from GET /api/feeds (channels ticker:<SYMBOL>).
import { h, fmtNum, fmtInt } from './common.js';
import { setupFeedPage, showNotice, flash, lastData, watchFeeds } from './feeds.js';

const SPARK_POINTS = 60;
const cards = new Map(); // channel -> {el, parts, prices, last}

function makeCard(channel) {
  const symbol = channel.slice('ticker:'.length);
  const parts = {
    price: h('div', { class: 'quote-price', 'aria-label': `${symbol} price` }, '–'),
    change: h('div', { class: 'quote-change' }, ''),
    bid: h('b', null, '–'), ask: h('b', null, '–'), volume: h('b', null, '–'),
    time: h('span', { class: 'updated' }, 'waiting…'),
    spark: document.createElementNS('http://www.w3.org/2000/svg', 'svg'),
  };
  parts.spark.setAttribute('class', 'spark');
  parts.spark.setAttribute('viewBox', '0 0 100 30');
  parts.spark.setAttribute('preserveAspectRatio', 'none');
  parts.spark.setAttribute('aria-hidden', 'true');
  const el = h('article', { class: 'card quote', dataset: { channel, symbol }, 'aria-label': symbol },
    h('div', { class: 'quote-top' }, h('span', { class: 'quote-sym' }, symbol), parts.time),
    parts.price, parts.change, parts.spark,
    h('div', { class: 'quote-meta' },
      h('div', null, 'Bid', parts.bid), h('div', null, 'Ask', parts.ask), h('div', null, 'Volume', parts.volume)));
  const card = { el, parts, prices: [], last: null };
  cards.set(channel, card);
  return card;
}

function drawSpark(card) {
  const svg = card.parts.spark;
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const p = card.prices.length === 1 ? [card.prices[0], card.prices[0]] : card.prices;
  if (!p.length) return;
  const min = Math.min(...p);
  const max = Math.max(...p);
  const span = max - min || 1;
  const n = Math.max(p.length - 1, 1);
  const pts = p.map((v, i) => `${((i / n) * 100).toFixed(2)},${(28 - ((v - min) / span) * 26).toFixed(2)}`);
  const up = p[p.length - 1] >= p[0];
  const ns = 'http://www.w3.org/2000/svg';
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', pts.join(' '));
  line.setAttribute('fill', 'none');
  line.setAttribute('stroke', up ? 'var(--up)' : 'var(--down)');
  line.setAttribute('stroke-width', '1.6');
  line.setAttribute('vector-effect', 'non-scaling-stroke');
  line.setAttribute('stroke-linejoin', 'round');
  const area = document.createElementNS(ns, 'polygon');
  area.setAttribute('points', `0,30 ${pts.join(' ')} 100,30`);
  area.setAttribute('fill', up ? 'var(--up)' : 'var(--down)');
  area.setAttribute('opacity', '0.12');
  svg.appendChild(area);
  svg.appendChild(line);
}

function update(channel, msg, { animate = true } = {}) {
  const card = cards.get(channel);
  const q = msg && msg.data;
  if (!card || !q || typeof q.price !== 'number') return;
  const prev = card.last;
  card.last = q;
  const { parts } = card;
  parts.price.textContent = fmtNum(q.price);
  const ch = typeof q.change === 'number' ? q.change : 0;
  const pct = typeof q.change_pct === 'number' ? q.change_pct : 0;
  parts.change.textContent = `${ch >= 0 ? '▲ +' : '▼ '}${fmtNum(ch)} (${pct >= 0 ? '+' : ''}${fmtNum(pct)}%)`;
  parts.change.className = `quote-change ${ch >= 0 ? 'up' : 'down'}`;
  parts.bid.textContent = fmtNum(q.bid);
  parts.ask.textContent = fmtNum(q.ask);
  parts.volume.textContent = fmtInt(q.volume);
  parts.time.textContent = new Date(msg.ts || Date.now()).toLocaleTimeString();
  card.el.dataset.price = String(q.price);
  card.prices.push(q.price);
  if (card.prices.length > SPARK_POINTS) card.prices.shift();
  drawSpark(card);
  if (animate && prev && prev.price !== q.price) flash(card.el, q.price > prev.price ? 'flash-up' : 'flash-down');
  document.getElementById('updated').textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

async function main() {
  const { client } = await setupFeedPage();
  const grid = document.getElementById('quotes');
  client.on('message', (m) => update(m.channel, m));
  client.on('reset', (e) => update(e.channel, lastData(e), { animate: false }));
  const join = (ch) => client.join(ch, { limit: 1 }).then(
    (reply) => update(ch, lastData(reply), { animate: false }),
    (err) => {
      const card = cards.get(ch);
      if (card) card.parts.time.textContent = `unavailable: ${err.message}`;
      if (err.code === 'unauthorized' || err.code === 'forbidden') {
        showNotice(['Quotes need an account here. ', h('a', { href: '/' }, 'Log in')]);
      }
    });
  watchFeeds('ticker', (channels) => {
    showNotice(null);
    for (const ch of channels) {
      const card = makeCard(ch);
      // keep the cards sorted by symbol
      const after = [...grid.children].find((el) => el.dataset.channel > ch);
      grid.insertBefore(card.el, after || null);
      join(ch);
    }
  }, {
    onEmpty: () => showNotice('Waiting for quote feeds…'),
    onError: (ex) => { if (!cards.size) showNotice(`Could not load the list of feeds: ${ex.message}`); },
  });
}

main();
