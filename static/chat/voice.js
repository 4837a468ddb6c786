// Recording voice messages: the "Record voice message" button of the composer. Press and
// hold (pointer or Space) records and releasing sends; a short click (or Enter) starts
// recording and a second click sends. Sliding the pointer away from the button, Escape
// or "Cancel recording" cancel. While recording: elapsed time and a level meter (an
// AnalyserNode). The level is sampled every 50 ms; the samples, folded into at most 64
// buckets scaled to 0-255, are the message's `peaks`.
import { api, toast } from '../common.js';
import { $, S } from './state.js';
import { publish } from './composer.js';
import { fmtDuration } from './media.js';

const HOLD_MS = 350; // a press longer than this is press-and-hold
const MAX_MS = 300000; // CHAT_VOICE_MAX_S's default
const SLIDE_PX = 80; // pointer this far from the button cancels

let rec = null; // {recorder, stream, chunks, started, levels, ctx, timer, mode, channel, cancelled}

/** Fold `levels` (0..1) into at most `n` peaks, integers 0-255: the loudest of each
 *  bucket, on a square-root scale so that quiet speech still shows. */
export function foldPeaks(levels, n = 64) {
  if (!levels.length) return [];
  const count = Math.min(n, levels.length);
  const out = [];
  for (let i = 0; i < count; i++) {
    const a = Math.floor((i * levels.length) / count);
    const b = Math.max(a + 1, Math.floor(((i + 1) * levels.length) / count));
    let m = 0;
    for (let j = a; j < b; j++) m = Math.max(m, levels[j]);
    out.push(Math.max(0, Math.min(255, Math.round(Math.sqrt(m) * 255))));
  }
  return out;
}

function pickMime() {
  const MR = window.MediaRecorder;
  for (const t of ['audio/webm;codecs=opus', 'audio/ogg;codecs=opus', 'audio/webm', 'audio/ogg']) {
    if (MR && MR.isTypeSupported && MR.isTypeSupported(t)) return t;
  }
  return '';
}

async function startRecording(mode) {
  if (rec || !S.active) return;
  const r = { mode, channel: S.active, chunks: [], levels: [], started: 0, cancelled: false, ready: null };
  rec = r;
  showBar(true);
  r.ready = (async () => {
    try {
      r.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (ex) {
      toast(`Microphone not available: ${ex.message}`, 'error');
      stopAll(r);
      return false;
    }
    const mime = pickMime();
    r.recorder = new MediaRecorder(r.stream, mime ? { mimeType: mime } : undefined);
    r.recorder.ondataavailable = (e) => { if (e.data && e.data.size) r.chunks.push(e.data); };
    r.ctx = new AudioContext();
    const analyser = r.ctx.createAnalyser();
    analyser.fftSize = 1024;
    r.ctx.createMediaStreamSource(r.stream).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    r.recorder.start(250);
    r.started = performance.now();
    r.timer = setInterval(() => {
      analyser.getFloatTimeDomainData(buf);
      let peak = 0;
      for (const v of buf) peak = Math.max(peak, Math.abs(v));
      r.levels.push(Math.min(1, peak));
      const elapsed = performance.now() - r.started;
      $('rec-time').textContent = fmtDuration(elapsed);
      $('rec-level').value = Math.min(1, peak);
      if (elapsed >= MAX_MS) finish(true);
    }, 50);
    return true;
  })();
}

function stopAll(r) {
  clearInterval(r.timer);
  if (r.stream) for (const t of r.stream.getTracks()) t.stop();
  if (r.ctx) r.ctx.close().catch(() => {});
  if (rec === r) { rec = null; showBar(false); }
}

/** Stop recording; send it unless `send` is false. */
async function finish(send) {
  const r = rec;
  if (!r) return;
  rec = null;
  showBar(false);
  const ok = await r.ready;
  if (!ok) return;
  const duration = Math.round(performance.now() - r.started);
  const stopped = new Promise((res) => { r.recorder.onstop = res; });
  if (r.recorder.state !== 'inactive') r.recorder.stop();
  await stopped;
  stopAll(r);
  if (!send) return;
  if (duration < 300) { toast('Hold to record a voice message', 'info'); return; }
  const mime = (r.recorder.mimeType || 'audio/webm').split(';')[0];
  const blob = new Blob(r.chunks, { type: mime });
  const ext = mime.includes('ogg') ? 'ogg' : 'webm';
  try {
    const form = new FormData();
    form.append('file', blob, `voice-${new Date().toISOString().replace(/[:.]/g, '-')}.${ext}`);
    const up = await api('POST', '/api/uploads', null, { form });
    publish(r.channel, {
      type: 'audio', url: up.url, name: up.name, size: up.size ?? blob.size, mime: up.mime || mime,
      duration_ms: Math.min(duration, MAX_MS), peaks: foldPeaks(r.levels),
    });
  } catch (ex) {
    toast(`Voice message not sent: ${ex.message}`, 'error', 6000);
  }
}

function showBar(on) {
  $('rec-bar').classList.toggle('hidden', !on);
  $('composer').classList.toggle('recording', on);
  $('record-btn').setAttribute('aria-pressed', on ? 'true' : 'false');
  if (on) { $('rec-time').textContent = '0:00'; $('rec-level').value = 0; }
}

/** Wire the record button, the cancel button and Escape. */
export function wireVoice() {
  const btn = $('record-btn');
  if (!window.MediaRecorder || !navigator.mediaDevices) { btn.disabled = true; btn.title = 'Recording is not supported by this browser'; return; }
  let pressAt = 0;
  let pressId = null;
  const press = () => {
    pressAt = performance.now();
    if (rec) return; // recording (click mode): the release sends
    startRecording('hold');
  };
  const release = () => {
    if (!pressAt) return;
    const held = performance.now() - pressAt;
    pressAt = 0;
    if (!rec) return;
    if (rec.mode === 'hold' && held < HOLD_MS) rec.mode = 'click'; // a click: keep recording
    else finish(true);
  };
  btn.addEventListener('pointerdown', (e) => {
    if (e.button !== 0) return;
    e.preventDefault();
    pressId = e.pointerId;
    try { btn.setPointerCapture(e.pointerId); } catch (_) { /* synthetic */ }
    press();
  });
  btn.addEventListener('pointerup', (e) => { if (e.pointerId === pressId) { pressId = null; release(); } });
  btn.addEventListener('pointermove', (e) => {
    if (pressId === null || e.pointerId !== pressId || !rec) return;
    const b = btn.getBoundingClientRect();
    const dx = Math.max(b.left - e.clientX, e.clientX - b.right, 0);
    const dy = Math.max(b.top - e.clientY, e.clientY - b.bottom, 0);
    if (Math.hypot(dx, dy) > SLIDE_PX) { pressId = null; pressAt = 0; finish(false); toast('Voice message cancelled', 'info'); }
  });
  btn.addEventListener('pointercancel', () => { if (pressId !== null) { pressId = null; pressAt = 0; finish(false); } });
  btn.addEventListener('keydown', (e) => {
    if (e.key === ' ' || e.key === 'Spacebar') { e.preventDefault(); if (!e.repeat) press(); }
    else if (e.key === 'Enter') { e.preventDefault(); if (!e.repeat) { if (rec) finish(true); else startRecording('click'); } }
  });
  btn.addEventListener('keyup', (e) => { if (e.key === ' ' || e.key === 'Spacebar') { e.preventDefault(); release(); } });
  btn.addEventListener('click', (e) => e.preventDefault());
  $('rec-cancel').addEventListener('click', () => finish(false));
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && rec) { e.preventDefault(); pressAt = 0; finish(false); } });
}
