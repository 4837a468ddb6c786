// The composer: writing and sending messages (shown as pending until the server
// acknowledges them, with a retry when sending failed), the typing signal, and
// uploading files (attach button, paste, drag and drop) as messages.
import { api, h, toast } from '../common.js';
import { $, S } from './state.js';
import { getView, addMessage, scrollToBottom, markRead, editLastOwn } from './messages.js';

// ------------------------------------------------------------------ sending

function send(text) {
  const channel = S.active;
  if (!channel) return;
  const data = { type: 'text', text };
  publish(channel, data);
}

/** Publish `data` into `channel`, shown as pending until acknowledged. */
export function publish(channel, data) {
  const v = getView(channel);
  const p = S.client.publish(channel, data);
  const clientId = p.clientId;
  addMessage(v, { channel, from: { id: S.me.id, name: S.me.name }, ts: Date.now(), data, client_id: clientId }, { pending: true });
  scrollToBottom();
  p.then((ok) => {
    const row = v.pending.get(clientId);
    if (row) addMessage(v, { ...row._m, seq: ok.seq, ts: ok.ts || row._m.ts });
    if (channel === S.active) markRead();
  }, (err) => {
    const row = v.pending.get(clientId);
    if (!row) return;
    row.classList.remove('pending');
    row.classList.add('failed');
    v.pending.delete(clientId);
    row.querySelector('.msg-body').append(h('div', { class: 'msg-status' }, `Not sent (${err.message}). `,
      h('button', { type: 'button', class: 'btn btn-ghost small', onclick: () => { row.remove(); publish(channel, data); } }, 'Retry')));
  });
}

// ------------------------------------------------------------------ uploads

async function uploadFiles(files) {
  const channel = S.active;
  if (!channel) return;
  for (const file of files) {
    const note = toastProgress(`Uploading ${file.name}…`);
    try {
      const form = new FormData();
      form.append('file', file, file.name);
      const r = await api('POST', '/api/uploads', null, { form });
      const mime = r.mime || file.type || 'application/octet-stream';
      let type = 'file';
      if (mime.startsWith('image/')) type = 'image';
      else if (mime.startsWith('audio/')) type = 'audio';
      else if (mime.startsWith('video/')) type = 'video';
      publish(channel, { type, url: r.url, name: r.name || file.name, size: r.size ?? file.size, mime });
    } catch (ex) {
      toast(`Upload of ${file.name} failed: ${ex.status === 413 ? 'file too large' : ex.message}`, 'error', 6000);
    } finally {
      note.remove();
    }
  }
}

function toastProgress(text) {
  toast(text, 'info', 600000);
  const box = document.getElementById('toasts');
  return box.lastElementChild;
}

// ------------------------------------------------------------------ wiring

function autosize(ta) {
  ta.style.height = 'auto';
  ta.style.height = Math.min(ta.scrollHeight, 160) + 'px';
}

/** Wire the composer form and its textarea, the attach button and dropping files on the chat. */
export function wireComposer() {
  const input = $('composer-input');
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    send(text);
    input.value = '';
    autosize(input);
    input.focus();
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); $('composer').requestSubmit(); }
    else if (e.key === 'ArrowUp' && !input.value && editLastOwn()) e.preventDefault();
    else if (e.key === 'Escape') { input.blur(); }
  });
  input.addEventListener('input', () => {
    autosize(input);
    if (input.value.trim() && S.active) S.client.typing(S.active);
  });
  input.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files || [])];
    if (files.length) { e.preventDefault(); uploadFiles(files); }
  });
  $('attach-btn').onclick = () => $('file-input').click();
  $('file-input').addEventListener('change', () => {
    const files = [...$('file-input').files];
    $('file-input').value = '';
    uploadFiles(files);
  });
  const main = $('main');
  main.addEventListener('dragover', (e) => { if (e.dataTransfer?.types?.includes('Files')) { e.preventDefault(); main.classList.add('drop-hint'); } });
  main.addEventListener('dragleave', (e) => { if (e.target === main) main.classList.remove('drop-hint'); });
  main.addEventListener('drop', (e) => {
    main.classList.remove('drop-hint');
    const files = [...(e.dataTransfer?.files || [])];
    if (files.length) { e.preventDefault(); uploadFiles(files); }
  });
}
