// The login / register view and logging out.
import { api, whoami } from '../common.js';
import { $, S } from './state.js';

let authMode = 'login';
let onLoggedIn = null;

function setAuthMode(mode) {
  authMode = mode;
  $('tab-login').setAttribute('aria-selected', String(mode === 'login'));
  $('tab-register').setAttribute('aria-selected', String(mode === 'register'));
  $('auth-title').textContent = mode === 'login' ? 'Welcome back' : 'Create an account';
  $('auth-submit').textContent = mode === 'login' ? 'Log in' : 'Create account';
  $('auth-password').autocomplete = mode === 'login' ? 'current-password' : 'new-password';
  $('auth-error').textContent = '';
}

export function showAuth() {
  $('auth-view').classList.remove('hidden');
  $('chat-view').classList.add('hidden');
  $('userbox').classList.add('hidden');
  $('conn').classList.add('hidden');
  $('menu-btn').classList.add('hidden');
  $('auth-name').focus();
}

async function onAuthSubmit(e) {
  e.preventDefault();
  const name = $('auth-name').value.trim();
  const password = $('auth-password').value;
  const err = $('auth-error');
  err.textContent = '';
  if (!/^[A-Za-z0-9_.-]{1,32}$/.test(name)) { err.textContent = 'User name: 1–32 letters, digits, _ . or -'; return; }
  if (password.length < 8) { err.textContent = 'Password: at least 8 characters'; return; }
  $('auth-submit').disabled = true;
  try {
    if (authMode === 'register') await api('POST', '/api/register', { name, password });
    await api('POST', '/api/login', { name, password });
    const me = await whoami();
    if (!me) throw new Error('login did not stick (cookies blocked?)');
    $('auth-password').value = '';
    onLoggedIn(me);
  } catch (ex) {
    err.textContent = ex.status === 401 ? 'Wrong user name or password' : ex.message;
  } finally {
    $('auth-submit').disabled = false;
  }
}

/** Wire the auth form and the logout button; `loggedIn(me)` opens the chat. */
export function wireAuth(loggedIn) {
  onLoggedIn = loggedIn;
  $('tab-login').onclick = () => setAuthMode('login');
  $('tab-register').onclick = () => setAuthMode('register');
  $('auth-form').addEventListener('submit', onAuthSubmit);
  $('logout-btn').onclick = async () => {
    try { await api('POST', '/api/logout'); } catch (_) { /* ignore */ }
    if (S.client) S.client.close();
    localStorage.removeItem('chat.active');
    location.reload();
  };
}
