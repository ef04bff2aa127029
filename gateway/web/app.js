// The web phone: sign in, register, call (audio, or audio and video), answer, DTMF, hold,
// camera on and off, add video, share the screen, call quality, messages (the history
// synced from the gateway, delivered and read marks, the same on every tab), and contacts
// with their presence. Built on sylkrtc.js.

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
  watchMessages(acc);
  watchContacts(connection, acc);
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

async function microphone(video = false) {
  return navigator.mediaDevices.getUserMedia({ audio: true, video });
}

async function camera() {
  return navigator.mediaDevices.getUserMedia({ audio: false, video: true });
}

/** Whether an offer has video that is not declined. */
function offersVideo(sdp) {
  return /^m=video [1-9]/m.test(sdp || '');
}

async function dial(event) {
  event.preventDefault();
  if (!phone.account || phone.call) return;
  const uri = $('uri').value.trim();
  if (!uri) return;
  showError('');
  let localStream;
  const video = $('with-video').checked;
  try {
    localStream = await microphone(video);
  } catch (error) {
    showError(`The ${video ? 'camera or microphone' : 'microphone'} is not available: ${error.message}`);
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
    await call.answer({ localStream: await microphone(offersVideo(call._offer)) });
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
  call.on('localStreamAdded', () => showLocalVideo(call));
  call.on('updateRequest', async ({ remoteMediaDirections }) => {
    // The far end's new offer (hold, resume, video added): answered at once, with the camera
    // when it adds video and we send none.
    const wantsVideo = remoteMediaDirections.video.some((d) => d !== 'inactive');
    let localStream;
    if (wantsVideo && !call.hasLocalVideo) {
      try { localStream = await camera(); } catch { /* answered without ours */ }
    }
    call.answerUpdate({ localStream }).catch((error) => showError(error.message));
  });
  call.on('mediaUpdated', ({ hasLocalVideo, hasRemoteVideo, onHold }) => {
    $('hold').textContent = onHold ? 'Resume' : 'Hold';
    // The far end removed its video (or holds it): no frozen picture.
    $('remote-video').hidden = !hasRemoteVideo;
    badge($('call-state'), onHold ? 'on hold' : call.state, onHold ? '' : 'good');
    if (!hasLocalVideo && videoRequested) showError('The other side does not take video.');
    videoRequested = false;
    showLocalVideo(call);
  });
  call.on('updateFailed', (error) => showError(`The change was refused: ${error.message}`));
  call.on('stateChanged', (old, state, data) => {
    if (state === 'accepted' || state === 'established') showLocalVideo(call);
    badge($('call-state'), call.onHold ? 'on hold' : state, state === 'established' ? 'good' : '');
    if (state === 'accepting' || state === 'accepted' || state === 'established') $('in-call').hidden = false;
    if ((state === 'accepted' || state === 'established') && !timer) {
      timer = setInterval(() => tick(call), 1000);
      tick(call);
    }
    if (state === 'terminated') ended(call, data?.reason);
  });
}

/** The local preview and the video buttons, as the call's video stands. */
function showLocalVideo(call) {
  const stream = call.getLocalStreams()[0];
  const video = call.hasLocalVideo || (stream?.getVideoTracks().length ?? 0) > 0;
  $('local-video').srcObject = video ? stream : null;
  $('local-video').hidden = !video;
  $('camera').hidden = !video;
  $('share-screen').hidden = !video || !navigator.mediaDevices.getDisplayMedia;
  $('add-video').hidden = video;
  const track = stream?.getVideoTracks()[0];
  $('camera').textContent = track && !track.enabled ? 'Camera on' : 'Camera off';
  $('share-screen').textContent = call.sharingScreen ? 'Stop sharing' : 'Share screen';
}

async function toggleHold() {
  const call = phone.call;
  if (!call) return;
  try {
    await (call.onHold ? call.unhold() : call.hold());
  } catch (error) {
    showError(error.message);
  }
}

/** Camera off sends black frames (the track disabled), without renegotiation. */
function toggleCamera() {
  const track = phone.call?.getLocalStreams()[0]?.getVideoTracks()[0];
  if (!track) return;
  track.enabled = !track.enabled;
  showLocalVideo(phone.call);
}

/** Whether our own offer to add video waits for its answer (to say so when it is declined). */
let videoRequested = false;

async function addVideo() {
  const call = phone.call;
  if (!call) return;
  try {
    videoRequested = true;
    await call.addVideo({ localStream: await camera() });
  } catch (error) {
    showError(`Video could not be added: ${error.message}`);
  }
}

async function toggleScreen() {
  const call = phone.call;
  if (!call) return;
  try {
    if (call.sharingScreen) {
      await call.stopScreensharing();
    } else {
      const screen = await navigator.mediaDevices.getDisplayMedia({ video: true });
      const [track] = screen.getVideoTracks();
      // The browser's own "stop sharing" button puts the camera back.
      track.addEventListener('ended', () => { if (call.sharingScreen) toggleScreen(); });
      await call.startScreensharing(track);
    }
  } catch (error) {
    showError(`The screen could not be shared: ${error.message}`);
  }
  showLocalVideo(call);
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
  let video = '-';
  report.forEach((stat) => {
    if (stat.type === 'inbound-rtp' && stat.kind === 'video' && stat.framesDecoded) {
      const name = report.get(stat.codecId)?.mimeType.replace('video/', '') || '';
      video = `${name} ${stat.frameWidth || 0}x${stat.frameHeight || 0}, ${Math.round(stat.framesPerSecond || 0)} fps`;
    }
  });
  $('stat-video').textContent = video;
}

function ended(call, reason) {
  clearInterval(timer);
  timer = null;
  if (phone.call === call) phone.call = null;
  $('incoming').hidden = true;
  $('in-call').hidden = true;
  $('dial').hidden = false;
  $('remote-video').hidden = true;
  $('remote-video').srcObject = null;
  $('local-video').hidden = true;
  $('local-video').srcObject = null;
  $('hold').textContent = 'Hold';
  for (const track of call.getLocalStreams()[0]?.getTracks() ?? []) track.stop();
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
$('hold').addEventListener('click', toggleHold);
$('camera').addEventListener('click', toggleCamera);
$('add-video').addEventListener('click', addVideo);
$('share-screen').addEventListener('click', toggleScreen);
loadSettings();

// Messages: one list, newest last; each line says who, what and (for ours) how far it got.

/** The content types that are messages to show (the rest are the apps' own: keys, files). */
function shown(message) {
  return /^text\//.test(message.contentType || '');
}

function messageLine(message) {
  let line = document.querySelector(`#messages li[data-id="${CSS.escape(message.id)}"]`);
  if (!line) {
    line = document.createElement('li');
    line.dataset.id = message.id;
    const who = document.createElement('span');
    who.className = 'who';
    const text = document.createElement('span');
    text.className = 'text';
    const state = document.createElement('span');
    state.className = 'state badge';
    line.append(who, text, state);
    const list = $('messages');
    const after = [...list.children].find((other) => Number(other.dataset.at) > message.timestamp.getTime());
    line.dataset.at = String(message.timestamp.getTime());
    list.insertBefore(line, after || null);
  }
  const incoming = message.direction === 'incoming';
  line.className = incoming ? 'incoming' : 'outgoing';
  line.querySelector('.who').textContent = incoming
    ? `${message.sender?.displayName || message.sender?.uri}:`
    : `to ${message.receiver}:`;
  line.querySelector('.text').textContent = message.content;
  setMessageState(message.id, incoming ? '' : message.state);
  return line;
}

function setMessageState(id, state) {
  const line = document.querySelector(`#messages li[data-id="${CSS.escape(id)}"]`);
  if (line && line.className === 'outgoing') {
    badge(line.querySelector('.state'), state || '', state === 'failed' ? 'bad' : (state === 'displayed' ? 'good' : ''));
  }
}

function watchMessages(acc) {
  $('messages').replaceChildren();
  let synced = false;
  acc.on('registrationStateChanged', (old, state) => {
    // The history once per sign-in (and again after a reconnection): what came meanwhile.
    if (state === 'registered' && !synced) {
      synced = true;
      acc.syncConversations();
    }
  });
  // Shown: the sender hears it was read (and delivered, for one that just came), when it
  // asked; a message read before (on this tab or another) is not told again.
  const read = (message, delivered) => {
    const asks = message.dispositionNotification;
    if (delivered && asks.includes('positive-delivery')) {
      acc.sendDispositionNotification(message.sender.uri, message.id, message.timestamp, 'delivered');
    }
    if (asks.includes('display')) {
      acc.sendDispositionNotification(message.sender.uri, message.id, message.timestamp, 'displayed');
    }
  };
  acc.on('syncConversations', (messages) => {
    for (const message of messages) {
      if (!shown(message)) continue;
      messageLine(message);
      if (message.direction === 'incoming' && message.state !== 'displayed') read(message, false);
    }
  });
  acc.on('incomingMessage', (message) => {
    if (!shown(message)) return;
    messageLine(message);
    read(message, true);
  });
  const outgoing = (message) => { if (shown(message)) messageLine(message); };
  acc.on('sendingMessage', outgoing);
  acc.on('outgoingMessage', outgoing);
  acc.on('messageStateChanged', (id, state) => setMessageState(id, state));
  acc.on('removeMessage', (message) => {
    document.querySelector(`#messages li[data-id="${CSS.escape(message.id)}"]`)?.remove();
  });
}

function sendMessage(event) {
  event.preventDefault();
  const to = $('message-to').value.trim();
  const text = $('message-text').value;
  if (!phone.account || !to || !text) return;
  const domain = phone.account.id.split('@')[1];
  const uri = to.includes('@') ? to : `${to}@${domain}`;
  phone.account.sendMessage(uri, text, 'text/plain', {}, (error) => {
    if (error) showError(`The message could not be sent: ${error.message}`);
  });
  $('message-text').value = '';
}

$('compose').addEventListener('submit', sendMessage);

// Contacts: the address book the gateway keeps, each with what the gateway says of its
// presence (known only for users of the gateway's own domain who have us as a contact).

const presenceOf = new Map();

function renderContacts(connection) {
  const list = $('contacts');
  list.replaceChildren();
  const domain = phone.account?.id.split('@')[1];
  for (const contact of connection.addressbook.contacts) {
    const uri = String(contact.uri || '').replace(/^sips?:/, '');
    const line = document.createElement('li');
    line.dataset.uri = uri;
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = contact.name ? `${contact.name} <${uri}>` : uri;
    const state = document.createElement('span');
    state.className = 'presence badge';
    const known = presenceOf.get(uri);
    badge(state, known || 'unknown', known === 'online' ? 'good' : '');
    const write = document.createElement('button');
    write.type = 'button';
    write.className = 'link';
    write.textContent = 'Message';
    write.addEventListener('click', () => {
      $('message-to').value = uri.endsWith(`@${domain}`) ? uri.split('@')[0] : uri;
      $('message-text').focus();
    });
    line.append(name, state, write);
    list.append(line);
  }
}

function watchContacts(connection, acc) {
  presenceOf.clear();
  connection.addressbook.on('updated', () => renderContacts(connection));
  connection.addressbook.on('updateFailed', ({ error }) => showError(`The address book was not changed: ${error}`));
  acc.on('presence', (contact, state) => {
    presenceOf.set(contact, state);
    renderContacts(connection);
  });
  renderContacts(connection);
}

function addContact(event) {
  event.preventDefault();
  const connection = phone.connection;
  if (!connection || !phone.account) return;
  const domain = phone.account.id.split('@')[1];
  const entered = $('contact-uri').value.trim().replace(/^sips?:/, '');
  if (!entered) return;
  const uri = entered.includes('@') ? entered : `${entered}@${domain}`;
  const name = $('contact-name').value.trim();
  connection.addressbook.addContact({ id: uri, uri, name }, (error) => {
    if (error) showError(`The contact could not be added: ${error.message}`);
  });
  $('contact-uri').value = '';
  $('contact-name').value = '';
}

$('add-contact').addEventListener('submit', addContact);
