// The web phone: sign in, register, call, answer, DTMF, call quality. Built on sylkrtc.js.

import { createConnection } from './sylkrtc.js';

const $ = (id) => document.getElementById(id);
const phone = { connection: null, account: null, call: null };
// Exposed for debugging from the console (and for the end-to-end tests).
window.phone = phone;

/** Server errors and failures in plain words. */
function explain(text) {
  if (!text) return 'Something went wrong.';
  const t = String(text);
  if (/^401|^403|credentials rejected/i.test(t)) return `The server refused the account or password (${t}).`;
  if (/^404/.test(t)) return `No such user (${t}).`;
  if (/^408|timeout/i.test(t)) return `No answer from the server in time (${t}).`;
  if (/^486|busy/i.test(t)) return 'The other side is busy.';
  if (/^603|declin/i.test(t)) return 'The call was declined.';
  if (/^480/.test(t)) return 'The other side is not available.';
  if (/^487/.test(t)) return 'The call was cancelled.';
  if (/no common codec/i.test(t)) return `The two sides have no audio codec in common: ${t}`;
  if (/^503/.test(t)) return `The service is unavailable (${t}).`;
  if (/domain not allowed/i.test(t)) return `This gateway does not serve that domain (${t}).`;
  return t;
}

function showError(text) {
  const box = $('error');
  box.textContent = explain(text);
  box.hidden = !text;
}

function badge(element, text, tone) {
  element.textContent = text;
  element.classList.toggle('good', tone === 'good');
  element.classList.toggle('bad', tone === 'bad');
}

function defaultServer() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${window.WEBSOCKET_PATH || '/webrtcgateway/ws'}`;
}

async function loadSettings() {
  try {
    const response = await fetch('settings.json');
    if (response.ok) window.WEBSOCKET_PATH = (await response.json()).websocket_path;
  } catch { /* the default path */ }
  $('server').value = localStorage.getItem('server') || defaultServer();
  $('account').value = localStorage.getItem('account') || '';
  $('display-name').value = localStorage.getItem('displayName') || '';
}

function setSignedIn(signedIn) {
  $('sign-in').hidden = signedIn;
  $('phone').hidden = !signedIn;
}

async function signIn(event) {
  event.preventDefault();
  showError('');
  const server = $('server').value.trim();
  const account = $('account').value.trim();
  const password = $('password').value;
  const displayName = $('display-name').value.trim();
  localStorage.setItem('server', server);
  localStorage.setItem('account', account);
  localStorage.setItem('displayName', displayName);
  $('sign-in-button').disabled = true;
  const connection = createConnection({ server });
  phone.connection = connection;
  connection.on('stateChanged', (old, state, data) => {
    const tone = state === 'ready' ? 'good' : (state === 'disconnected' || state === 'closed' ? 'bad' : '');
    const text = state === 'disconnected' ? `reconnecting in ${Math.round((data?.retryIn || 1000) / 1000)} s` : state;
    badge($('connection-state'), text, tone);
    if (state === 'disconnected') showError(`Lost the connection to the gateway (${data?.reason}); reconnecting.`);
    if (state === 'ready' && old === 'connected' && phone.account) showError('');
  });
  connection.once('stateChanged', () => {});
  await new Promise((resolve) => {
    const ready = (old, state) => { if (state === 'ready' || state === 'closed') { connection.off('stateChanged', ready); resolve(); } };
    connection.on('stateChanged', ready);
  });
  try {
    phone.account = await connection.addAccount({ account, password, displayName });
  } catch (error) {
    showError(error.message);
    connection.close();
    $('sign-in-button').disabled = false;
    return;
  }
  $('password').value = '';
  const acc = phone.account;
  $('account-name').textContent = acc.id;
  acc.on('registrationStateChanged', (old, state, data) => {
    const tone = state === 'registered' ? 'good' : (state === 'failed' ? 'bad' : '');
    badge($('registration-state'), state || 'not registered', tone);
    if (state === 'failed') showError(data?.reason);
    if (state === 'registered') showError('');
  });
  acc.on('incomingCall', (call) => incoming(call));
  acc.on('missedCall', ({ originator }) => {
    $('last-call').textContent = `Missed call from ${originator?.display_name || originator?.uri || 'unknown'}.`;
  });
  acc.register();
  setSignedIn(true);
  $('sign-in-button').disabled = false;
}

function signOut() {
  if (phone.call) phone.call.terminate();
  phone.connection?.close();
  phone.connection = null;
  phone.account = null;
  badge($('connection-state'), 'offline');
  badge($('registration-state'), 'not registered');
  setSignedIn(false);
}

async function microphone() {
  return navigator.mediaDevices.getUserMedia({ audio: true, video: false });
}

async function dial(event) {
  event.preventDefault();
  if (!phone.account || phone.call) return;
  const uri = $('uri').value.trim();
  if (!uri) return;
  showError('');
  let localStream;
  try {
    localStream = await microphone();
  } catch (error) {
    showError(`The microphone is not available: ${error.message}`);
    return;
  }
  track(phone.account.call(uri, { localStream }));
}

function incoming(call) {
  if (phone.call) {
    // One call at a time in this page: a second one is declined.
    call.terminate();
    return;
  }
  phone.call = call;
  $('incoming-from').textContent = call.remoteIdentity.displayName
    ? `${call.remoteIdentity.displayName} <${call.remoteIdentity.uri}>`
    : call.remoteIdentity.uri;
  $('incoming').hidden = false;
  track(call);
}

async function answer() {
  const call = phone.call;
  if (!call) return;
  $('incoming').hidden = true;
  try {
    await call.answer({ localStream: await microphone() });
  } catch (error) {
    showError(`The call could not be answered: ${error.message}`);
  }
}

let timer = null;

function track(call) {
  phone.call = call;
  $('dial').hidden = true;
  $('peer').textContent = call.remoteIdentity.displayName || call.remoteIdentity.uri;
  $('in-call').hidden = call.direction === 'incoming';
  badge($('call-state'), call.state || 'starting');
  call.on('streamAdded', (stream, track) => {
    if (track.kind === 'video') {
      $('remote-video').srcObject = stream;
      $('remote-video').hidden = false;
    } else {
      $('remote-audio').srcObject = stream;
    }
  });
  call.on('stateChanged', (old, state, data) => {
    badge($('call-state'), state, state === 'established' ? 'good' : '');
    if (state === 'accepting' || state === 'accepted' || state === 'established') $('in-call').hidden = false;
    if ((state === 'accepted' || state === 'established') && !timer) {
      timer = setInterval(() => tick(call), 1000);
      tick(call);
    }
    if (state === 'terminated') ended(call, data?.reason);
  });
}

function tick(call) {
  const seconds = call.startTime ? Math.floor((Date.now() - call.startTime.getTime()) / 1000) : 0;
  $('timer').textContent = `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')}`;
  quality(call);
}

/** Round trip, jitter, loss and codec from getStats(). */
async function quality(call) {
  const report = await call.getStats();
  let codecId = null;
  report.forEach((stat) => {
    if (stat.type === 'candidate-pair' && stat.nominated && stat.currentRoundTripTime !== undefined) {
      $('stat-rtt').textContent = `${Math.round(stat.currentRoundTripTime * 1000)} ms`;
    }
    if (stat.type === 'inbound-rtp' && stat.kind === 'audio') {
      $('stat-jitter').textContent = `${Math.round((stat.jitter || 0) * 1000)} ms`;
      const lost = stat.packetsLost || 0;
      const total = lost + (stat.packetsReceived || 0);
      $('stat-loss').textContent = `${lost} (${total ? ((100 * lost) / total).toFixed(1) : '0.0'}%)`;
      codecId = stat.codecId;
    }
  });
  const codec = codecId && report.get(codecId);
  if (codec) $('stat-codec').textContent = `${codec.mimeType.replace('audio/', '')} ${codec.clockRate / 1000} kHz`;
}

function ended(call, reason) {
  clearInterval(timer);
  timer = null;
  if (phone.call === call) phone.call = null;
  $('incoming').hidden = true;
  $('in-call').hidden = true;
  $('dial').hidden = false;
  $('remote-video').hidden = true;
  const who = call.remoteIdentity?.displayName || call.remoteIdentity?.uri || '';
  const ordinary = !reason || /^(local hangup|remote hangup|local)$/.test(reason);
  $('last-call').textContent = reason === 'remote hangup'
    ? `Call with ${who} ended: they hung up.`
    : `Call with ${who} ended.`;
  if (!ordinary) showError(reason);
}

function keypad(event) {
  const key = event.target.closest('button')?.textContent;
  if (!key) return;
  const call = phone.call;
  if (call && (call.state === 'accepted' || call.state === 'established')) {
    call.sendDtmf(key).catch((error) => showError(error.message));
  } else {
    $('uri').value += key;
  }
}

$('sign-in').addEventListener('submit', signIn);
$('sign-out').addEventListener('click', signOut);
$('dial').addEventListener('submit', dial);
$('answer').addEventListener('click', answer);
$('decline').addEventListener('click', () => phone.call?.terminate());
$('hangup').addEventListener('click', () => phone.call?.terminate());
$('keypad').addEventListener('click', keypad);
loadSettings();
