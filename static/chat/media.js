// Rendering of voice messages (play button, waveform from `peaks`, duration), video
// messages (poster, duration) and call records in the message list. One voice or
// video message plays at a time: starting one pauses the others.
import { h, icon, safeUrl } from '../common.js';
import { S } from './state.js';

let playing = null; // the media element playing now

/** `m:ss` of a duration in milliseconds. */
export function fmtDuration(ms) {
  const s = Math.max(0, Math.round((Number(ms) || 0) / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

function exclusive(media) {
  media.addEventListener('play', () => {
    if (playing && playing !== media) playing.pause();
    playing = media;
  });
}

/** A voice message: play/pause, waveform bars that fill as it plays, duration. */
export function renderVoice(d, url) {
  const audio = h('audio', { src: url, preload: 'none' });
  exclusive(audio);
  const peaks = Array.isArray(d.peaks) && d.peaks.length ? d.peaks.slice(0, 64) : new Array(32).fill(64);
  const bars = peaks.map((p) => h('span', { class: 'bar', style: { height: `${Math.max(8, Math.round(((Number(p) || 0) / 255) * 100))}%` } }));
  const wave = h('span', { class: 'wave', 'aria-hidden': 'true' }, bars);
  const total = Number(d.duration_ms) || 0;
  const time = h('span', { class: 'voice-time small mono' }, fmtDuration(total));
  const btn = h('button', { type: 'button', class: 'btn btn-icon voice-play', 'aria-label': 'Play voice message', title: 'Play' }, icon('play', 16));
  const setIcon = (name, label) => { btn.replaceChildren(icon(name, 16)); btn.setAttribute('aria-label', label); };
  btn.onclick = () => { if (audio.paused) audio.play().catch(() => {}); else audio.pause(); };
  audio.addEventListener('play', () => { setIcon('pause', 'Pause voice message'); box.classList.add('playing'); });
  audio.addEventListener('pause', () => { setIcon('play', 'Play voice message'); box.classList.remove('playing'); });
  audio.addEventListener('timeupdate', () => {
    const dur = total / 1000 || audio.duration || 0;
    const frac = dur && isFinite(dur) ? Math.min(1, audio.currentTime / dur) : 0;
    const lit = Math.round(frac * bars.length);
    bars.forEach((b, i) => b.classList.toggle('lit', i < lit));
    time.textContent = fmtDuration(audio.currentTime * 1000);
  });
  audio.addEventListener('ended', () => { bars.forEach((b) => b.classList.remove('lit')); time.textContent = fmtDuration(total); });
  const box = h('div', { class: 'voice-msg', dataset: { duration: String(total) } }, btn, wave, time, audio);
  return box;
}

/** A video message: the video with its poster and duration. */
export function renderVideo(d, url) {
  const poster = safeUrl(d.poster);
  const video = h('video', { class: 'msg-media', src: url, controls: true, preload: 'metadata', playsinline: true, poster: poster || undefined });
  exclusive(video);
  return h('div', { class: 'video-msg' }, video,
    h('div', { class: 'small muted' }, d.duration_ms ? `Video message · ${fmtDuration(d.duration_ms)}` : String(d.name || '')));
}

/** A call record (written by the server from the caller). */
export function renderCall(m) {
  const d = m.data || {};
  const kind = d.media === 'video' ? 'Video call' : 'Voice call';
  const mine = m.from && S.me && String(m.from.id) === S.me.id;
  let text;
  if (d.status === 'answered') text = `${kind} · ${fmtDuration(d.duration_ms)}`;
  else if (d.status === 'declined') text = `${kind} declined`;
  else text = mine ? `${kind} · no answer` : `Missed ${kind.toLowerCase()}`;
  return h('p', { class: `msg-text call-record call-${d.status === 'answered' ? 'answered' : d.status === 'declined' ? 'declined' : 'missed'}`, dataset: { status: String(d.status || '') } },
    icon(d.media === 'video' ? 'video' : 'phone', 16), ' ', text);
}
