// Recording short video messages: the "Record video message" button of the composer
// starts the camera and recording (a preview with the elapsed time shows); clicking it
// again sends, "Cancel recording" or Escape cancel; it stops by itself after 60 s
// (CHAT_VIDEO_MESSAGE_MAX_S's default). A frame of the start is the poster (a JPEG
// upload); then the video is uploaded and a `video` message published with
// `duration_ms` and `poster`.
import { api, toast } from '../common.js';
import { $, S } from './state.js';
import { publish } from './composer.js';
import { fmtDuration } from './media.js';

const MAX_MS = 60000;

let rec = null; // {recorder, stream, chunks, started, timer, channel, poster}

function pickMime() {
  const MR = window.MediaRecorder;
  for (const t of ['video/webm;codecs=vp8,opus', 'video/webm;codecs=vp9,opus', 'video/webm', 'video/mp4']) {
    if (MR && MR.isTypeSupported && MR.isTypeSupported(t)) return t;
  }
  return '';
}

/** A JPEG of the preview's current frame, or null. */
function grabFrame(video) {
  if (!video.videoWidth) return Promise.resolve(null);
  const c = document.createElement('canvas');
  c.width = video.videoWidth;
  c.height = video.videoHeight;
  c.getContext('2d').drawImage(video, 0, 0);
  return new Promise((res) => c.toBlob(res, 'image/jpeg', 0.8));
}

async function start() {
  if (rec || !S.active) return;
  const r = { channel: S.active, chunks: [], started: 0, poster: null };
  rec = r;
  show(true);
  try {
    r.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
  } catch (ex) {
    toast(`Camera not available: ${ex.message}`, 'error');
    rec = null;
    show(false);
    return;
  }
  if (rec !== r) { stopTracks(r); return; }
  const preview = $('vrec-preview');
  preview.srcObject = r.stream;
  preview.play().catch(() => {});
  const mime = pickMime();
  r.recorder = new MediaRecorder(r.stream, mime ? { mimeType: mime } : undefined);
  r.recorder.ondataavailable = (e) => { if (e.data && e.data.size) r.chunks.push(e.data); };
  r.recorder.start(250);
  r.started = performance.now();
  r.timer = setInterval(() => {
    const elapsed = performance.now() - r.started;
    $('vrec-time').textContent = fmtDuration(elapsed);
    if (!r.poster && elapsed > 300 && preview.videoWidth) { r.poster = grabFrame(preview); }
    if (elapsed >= MAX_MS) finish(true);
  }, 100);
}

function stopTracks(r) {
  clearInterval(r.timer);
  if (r.stream) for (const t of r.stream.getTracks()) t.stop();
}

async function finish(send) {
  const r = rec;
  if (!r) return;
  rec = null;
  show(false);
  if (!r.recorder) { stopTracks(r); return; }
  const duration = Math.round(performance.now() - r.started);
  const stopped = new Promise((res) => { r.recorder.onstop = res; });
  if (r.recorder.state !== 'inactive') r.recorder.stop();
  await stopped;
  stopTracks(r);
  $('vrec-preview').srcObject = null;
  if (!send) return;
  if (duration < 500) { toast('Video message too short', 'info'); return; }
  const mime = (r.recorder.mimeType || 'video/webm').split(';')[0];
  const blob = new Blob(r.chunks, { type: mime });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  try {
    let poster;
    const frame = r.poster && await r.poster;
    if (frame) {
      const pf = new FormData();
      pf.append('file', frame, `video-${stamp}.jpg`);
      poster = (await api('POST', '/api/uploads', null, { form: pf })).url;
    }
    const form = new FormData();
    form.append('file', blob, `video-${stamp}.${mime.includes('mp4') ? 'mp4' : 'webm'}`);
    const up = await api('POST', '/api/uploads', null, { form });
    publish(r.channel, {
      type: 'video', url: up.url, name: up.name, size: up.size ?? blob.size, mime: up.mime || mime,
      duration_ms: Math.min(duration, MAX_MS), poster,
    });
  } catch (ex) {
    toast(`Video message not sent: ${ex.message}`, 'error', 6000);
  }
}

function show(on) {
  $('vrec-box').classList.toggle('hidden', !on);
  $('video-rec-btn').setAttribute('aria-pressed', on ? 'true' : 'false');
  if (on) $('vrec-time').textContent = '0:00';
}

/** Wire the video message button, its cancel button and Escape. */
export function wireVideoMessages() {
  const btn = $('video-rec-btn');
  if (!window.MediaRecorder || !navigator.mediaDevices) { btn.disabled = true; return; }
  btn.addEventListener('click', () => { if (rec) finish(true); else start(); });
  $('vrec-cancel').addEventListener('click', () => finish(false));
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && rec) { e.preventDefault(); finish(false); } });
}
