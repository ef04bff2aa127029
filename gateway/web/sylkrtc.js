// A client of the sylkRTC-2 protocol for browsers, as an ES module. Its API follows sylkrtc.js
// (createConnection, addAccount, register, call, incomingCall, answer, terminate, sendDtmf,
// stateChanged events; sendMessage, syncConversations and the other message methods of
// messages.js) so that applications written for it port with few changes.
//
//   import { createConnection } from './sylkrtc.js';
//   const connection = createConnection({ server: 'wss://host/webrtcgateway/ws' });
//   connection.on('stateChanged', (oldState, newState) => { ... });   // ... 'ready'
//   const account = await connection.addAccount({ account: 'alice@example.com', password });
//   account.on('registrationStateChanged', (oldState, newState, data) => { ... });
//   account.register();
//   const call = account.call('bob@example.com', { localStream });
//   call.on('stateChanged', (oldState, newState, data) => { ... });
//
// The connection pings the server every 5 s; when the socket drops or a ping goes unanswered,
// it reconnects (1 s, doubling to 30 s), adds its accounts again and registers those that were
// registered. Calls in progress end with the connection that carried them.

import { Emitter } from './emitter.js';
import { md5 } from './md5.js';
import { Addressbook } from './addressbook.js';
import { Message, messaging } from './messages.js';

export { Message };

const PROTOCOL = 'sylkRTC-2';

export class RequestError extends Error {
  constructor(request, message) {
    super(message);
    this.name = 'RequestError';
    this.request = request;
  }
}

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** `user@domain` from what a user typed (`sip:` and spaces removed). */
export function normalizeUri(uri, defaultDomain) {
  let text = String(uri).trim().replace(/^sips?:/i, '');
  if (!text.includes('@') && defaultDomain) text = `${text}@${defaultDomain}`;
  return text;
}

/** Opens a connection to a sylkRTC server. */
export function createConnection(options) {
  return new Connection(options);
}

export class Connection extends Emitter {
  constructor({ server, pingInterval = 5000, reconnect = true } = {}) {
    super();
    this.addressbook = new Addressbook(this);
    if (!server) throw new Error('createConnection needs a server URL');
    this.server = server;
    this.pingInterval = pingInterval;
    this.reconnect = reconnect;
    this.state = null;
    this.accounts = new Map();
    this._pending = new Map();
    this._transaction = 0;
    this._retry = 1000;
    this._closed = false;
    this._open();
  }

  _setState(state, data) {
    if (state === this.state) return;
    const old = this.state;
    this.state = state;
    this.emit('stateChanged', old, state, data);
  }

  _open() {
    this._setState('connecting');
    let socket;
    try {
      socket = new WebSocket(this.server, PROTOCOL);
    } catch (error) {
      this._lost(`cannot connect: ${error.message}`);
      return;
    }
    this._socket = socket;
    socket.onopen = () => {
      if (socket !== this._socket) return;
      this._setState('connected');
    };
    socket.onmessage = (message) => {
      if (socket !== this._socket) return;
      let data;
      try { data = JSON.parse(message.data); } catch { return; }
      this._receive(data);
    };
    socket.onclose = (event) => {
      if (socket !== this._socket) return;
      this._lost(event.reason || `connection closed (${event.code})`);
    };
    socket.onerror = () => {};
  }

  /** The socket is gone: fail what waited on it, end the calls, and try again later. */
  _lost(reason) {
    clearInterval(this._pinger);
    this._pinger = null;
    this._socket = null;
    for (const { reject, name } of this._pending.values()) reject(new RequestError(name, `connection lost: ${reason}`));
    this._pending.clear();
    for (const account of this.accounts.values()) account._connectionLost(reason);
    if (this._closed || !this.reconnect) {
      this._setState('closed', { reason });
      return;
    }
    this._setState('disconnected', { reason, retryIn: this._retry });
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._open(), this._retry);
    this._retry = Math.min(this._retry * 2, 30000);
  }

  _receive(data) {
    switch (data.sylkrtc) {
      case 'ready-event':
        this._retry = 1000;
        this._startPings();
        this._restore().finally(() => this._setState('ready'));
        return;
      case 'ack':
      case 'error': {
        const pending = this._pending.get(data.transaction);
        if (!pending) return;
        this._pending.delete(data.transaction);
        if (data.sylkrtc === 'ack') pending.resolve(data);
        else pending.reject(new RequestError(pending.name, data.error));
        return;
      }
      case 'account-event':
        this.accounts.get(data.account)?._event(data);
        return;
      case 'lookup-public-key-event': {
        const waiting = this._keyLookups?.get(data.uri) || [];
        this._keyLookups?.delete(data.uri);
        for (const resolve of waiting) resolve(data.public_key ?? null);
        return;
      }
      case 'session-event':
        for (const account of this.accounts.values()) {
          const call = account.calls.get(data.session);
          if (call) { call._event(data); return; }
        }
        return;
      default:
    }
  }

  _startPings() {
    clearInterval(this._pinger);
    let unanswered = 0;
    this._pinger = setInterval(() => {
      // Two pings in a row without an ack: the connection is dead even if TCP has not noticed.
      if (unanswered >= 2) { this._socket?.close(4000, 'ping timeout'); this._lost('ping timeout'); return; }
      unanswered += 1;
      this.request('ping').then(() => { unanswered = 0; }, () => {});
    }, this.pingInterval);
  }

  /** After a reconnect: the accounts are added again, and registered if they were. */
  async _restore() {
    for (const account of this.accounts.values()) {
      try {
        await this.request('account-add', account._addFields());
        if (account._wantRegistered) account.register();
      } catch (error) {
        account._setRegistrationState('failed', { reason: error.message });
      }
    }
  }

  /** Sends a request; resolves with the ack, rejects with a RequestError. */
  request(name, fields = {}) {
    if (!this._socket || this._socket.readyState !== WebSocket.OPEN) {
      return Promise.reject(new RequestError(name, 'not connected'));
    }
    this._transaction += 1;
    const transaction = `${this._transaction}`;
    const message = { sylkrtc: name, transaction, ...fields };
    return new Promise((resolve, reject) => {
      this._pending.set(transaction, { resolve, reject, name });
      this._socket.send(JSON.stringify(message));
    });
  }

  /**
   * Adds an account. `password` is the plain password unless `ha1` is true (then it is the
   * HA1 already); the HA1 is md5(user:realm:password) with the account's domain as realm.
   * Returns a promise of the Account; a callback (error, account) may be given too.
   */
  addAccount({ account, password, displayName, ha1 = false, realm, incomingHeaderPrefixes } = {}, callback) {
    const id = normalizeUri(account);
    const [user, domain] = id.split('@');
    const secret = ha1 ? password : md5(`${user}:${realm || domain.split(':')[0]}:${password}`);
    const created = new Account(this, id, secret, displayName, incomingHeaderPrefixes);
    const done = this.request('account-add', created._addFields()).then(() => {
      this.accounts.set(id, created);
      return created;
    });
    if (callback) done.then((value) => callback(null, value), (error) => callback(error));
    return done;
  }

  /** Removes an account (its registration too). */
  removeAccount(account, callback) {
    const done = this.request('account-remove', { account: account.id }).finally(() => {
      this.accounts.delete(account.id);
    });
    if (callback) done.then(() => callback(null), (error) => callback(error));
    return done;
  }

  /** The public key `uri` published, or null: a promise. */
  lookupPublicKey(uri) {
    if (!this._keyLookups) this._keyLookups = new Map();
    return new Promise((resolve, reject) => {
      const waiting = this._keyLookups.get(uri) || [];
      waiting.push(resolve);
      this._keyLookups.set(uri, waiting);
      this.request('lookup-public-key', { uri }).catch((error) => {
        this._keyLookups.delete(uri);
        reject(error);
      });
    });
  }

  /** Closes the connection for good. */
  close() {
    this._closed = true;
    clearTimeout(this._retryTimer);
    if (this._socket) this._socket.close(1000, 'closed by the client');
    else this._setState('closed');
  }
}

export class Account extends Emitter {
  constructor(connection, id, ha1, displayName, incomingHeaderPrefixes) {
    super();
    this._connection = connection;
    this.id = id;
    this.displayName = displayName || '';
    this._ha1 = ha1;
    this._headerPrefixes = incomingHeaderPrefixes;
    this.registrationState = null;
    this.calls = new Map();
    this._wantRegistered = false;
  }

  _addFields() {
    const fields = { account: this.id, password: this._ha1 };
    if (this.displayName) fields.display_name = this.displayName;
    if (this._headerPrefixes) fields.incoming_header_prefixes = this._headerPrefixes;
    return fields;
  }

  _setRegistrationState(state, data) {
    if (state === this.registrationState) return;
    const old = this.registrationState;
    this.registrationState = state;
    this.emit('registrationStateChanged', old, state, data);
    // As sylkrtc.js does: the address book once registered.
    if (state === 'registered') {
      this._connection.request('account-fetch-addressbook', { account: this.id }).catch(() => {});
    }
  }

  /** Registers the account; the outcome comes as registrationStateChanged. */
  register() {
    this._wantRegistered = true;
    return this._connection.request('account-register', { account: this.id }).catch((error) => {
      this._setRegistrationState('failed', { reason: error.message });
    });
  }

  unregister() {
    this._wantRegistered = false;
    return this._connection.request('account-unregister', { account: this.id }).then(() => {
      this._setRegistrationState(null);
    });
  }

  /** Calls `uri` (user@domain) with the tracks of `localStream`. */
  call(uri, { localStream, headers } = {}) {
    const call = new Call(this, uuid(), 'outgoing');
    call.remoteIdentity = { uri: normalizeUri(uri, this.id.split('@')[1]), displayName: '' };
    this.calls.set(call.id, call);
    call._start(localStream, headers);
    this.emit('outgoingCall', call);
    return call;
  }

  _event(data) {
    switch (data.event) {
      case 'registration-state':
        this._setRegistrationState(data.state, { reason: data.reason });
        return;
      case 'incoming-session': {
        const call = new Call(this, data.session, 'incoming');
        call.remoteIdentity = { uri: data.originator?.uri || '', displayName: data.originator?.display_name || '' };
        call.callId = data.call_id;
        call.headers = data.headers || {};
        call._offer = data.sdp;
        call.state = 'incoming';
        this.calls.set(call.id, call);
        this.emit('incomingCall', call);
        return;
      }
      case 'missed-session':
        this.emit('missedCall', { originator: data.originator });
        return;
      case 'presence':
        this.emit('presence', data.contact, data.state);
        return;
      default:
        if (!this._messageEvent(data)) this._connection.addressbook._event(data);
    }
  }

  _connectionLost(reason) {
    this.registrationState = null;
    for (const call of [...this.calls.values()]) call._terminated(`connection lost: ${reason}`);
  }
}

Object.assign(Account.prototype, messaging);

export class Call extends Emitter {
  constructor(account, id, direction) {
    super();
    this.account = account;
    this.id = id;
    this.direction = direction;
    this.state = null;
    this.remoteIdentity = null;
    this.callId = null;
    this.startTime = null;
    this.endTime = null;
    this._pc = null;
    this._remoteStream = new MediaStream();
    this._localStream = null;
    this._sent = false;
    this._queued = [];
    // A renegotiation of ours (addVideo, hold) or the far end's waits for its answer.
    this._upgrading = false;
    this._pendingVideo = null;
    this._previousTrack = null;
    this._remoteOffer = null;
    this.onHold = false;
    this.sharingScreen = false;
  }

  get connection() { return this.account._connection; }

  _setState(state, data) {
    if (state === this.state) return;
    const old = this.state;
    this.state = state;
    if (state === 'accepted' || (state === 'established' && !this.startTime)) this.startTime = this.startTime || new Date();
    if (state === 'terminated') this.endTime = new Date();
    this.emit('stateChanged', old, state, data);
  }

  _peer(localStream) {
    const pc = new RTCPeerConnection({ iceServers: [] });
    this._pc = pc;
    this._localStream = localStream ? new MediaStream(localStream.getTracks()) : null;
    if (localStream) for (const track of localStream.getTracks()) pc.addTrack(track, localStream);
    else pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.ontrack = (event) => {
      this._remoteStream.addTrack(event.track);
      this.emit('streamAdded', this._remoteStream, event.track);
    };
    pc.onicecandidate = (event) => {
      // Trickle: each candidate, then the empty list that ends them.
      const candidates = event.candidate ? [event.candidate.toJSON()] : [];
      if (this._sent) this._trickle(candidates);
      else this._queued.push(candidates);
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed' && this.state !== 'terminated') {
        this.terminate();
      }
    };
    return pc;
  }

  _trickle(candidates) {
    this.connection.request('session-trickle', { session: this.id, candidates }).catch(() => {});
  }

  _flush() {
    this._sent = true;
    for (const candidates of this._queued) this._trickle(candidates);
    this._queued = [];
  }

  async _start(localStream, headers) {
    this._setState('progress');
    try {
      const pc = this._peer(localStream);
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      const fields = { account: this.account.id, session: this.id, uri: this.remoteIdentity.uri, sdp: pc.localDescription.sdp };
      if (headers) fields.headers = headers;
      await this.connection.request('session-create', fields);
      this._flush();
    } catch (error) {
      this._terminated(error.message);
    }
  }

  /** Answers an incoming call with the tracks of `localStream`. */
  async answer({ localStream, headers } = {}) {
    if (this.direction !== 'incoming' || this.state !== 'incoming') throw new Error('no call to answer');
    this._setState('accepting');
    try {
      const pc = this._peer(localStream);
      await pc.setRemoteDescription({ type: 'offer', sdp: this._offer });
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      const fields = { session: this.id, sdp: pc.localDescription.sdp };
      if (headers) fields.headers = headers;
      await this.connection.request('session-answer', fields);
      this._flush();
    } catch (error) {
      this.terminate();
      this._terminated(error.message);
    }
  }

  /** Ends the call (declines it when incoming and not answered). */
  terminate() {
    if (this.state === 'terminated' || this.state === 'terminating') return;
    this._setState('terminating');
    this.connection.request('session-terminate', { session: this.id }).catch(() => {});
    // As sylkrtc.js does: if the server says nothing, the call ends here anyway.
    this._endTimer = setTimeout(() => this._terminated('local'), 300);
  }

  /** Sends DTMF tones (0-9, *, #, A-D) as SIP INFO. */
  sendDtmf(tones, { duration = 100 } = {}) {
    return this.connection.request('session-dtmf-info', { session: this.id, digit: String(tones), duration });
  }

  getLocalStreams() { return this._localStream ? [this._localStream] : []; }

  /** Whether the call sends video (a camera or a shared screen). */
  get hasLocalVideo() {
    return (this._pc?.getTransceivers() ?? []).some((t) => t.sender.track?.kind === 'video'
      && !t.stopped && (t.currentDirection === 'sendrecv' || t.currentDirection === 'sendonly'));
  }

  /** Whether the far end sends video. */
  get hasRemoteVideo() {
    return this._remoteStream.getVideoTracks().some((track) => track.readyState === 'live')
      && (this._pc?.getTransceivers() ?? []).some((t) => t.receiver.track.kind === 'video'
        && !t.stopped && (t.currentDirection === 'sendrecv' || t.currentDirection === 'recvonly'));
  }

  /** Adds the video of `localStream` to an audio call (a new offer through `session-update`);
   * `mediaUpdated` follows the far end's answer, `updateFailed` a refusal. */
  addVideo({ localStream } = {}) {
    this._checkStable();
    if (!localStream) throw new Error('Missing localStream');
    const tracks = localStream.getVideoTracks();
    if (tracks.length === 0) throw new Error('localStream contains no video tracks');
    this._upgrading = true;
    this._localStream = this._localStream || new MediaStream();
    this._pendingVideo = tracks.map((track) => {
      this._localStream.addTrack(track);
      return { sender: this._pc.addTrack(track, this._localStream), track };
    });
    this.emit('localStreamAdded', localStream);
    return this._offerUpdate();
  }

  /** Answers the far end's new offer (after `updateRequest`), adding the video of
   * `localStream` when given. */
  async answerUpdate({ localStream } = {}) {
    const pc = this._pc;
    if (!this._upgrading || !pc || pc.signalingState !== 'have-remote-offer') {
      throw new Error('No update in progress');
    }
    if (localStream) {
      this._localStream = this._localStream || new MediaStream();
      for (const track of localStream.getVideoTracks()) {
        this._localStream.addTrack(track);
        pc.addTrack(track, this._localStream);
      }
      this.emit('localStreamAdded', localStream);
    }
    try {
      await pc.setLocalDescription(await pc.createAnswer());
      await this.connection.request('session-update', { session: this.id, sdp: pc.localDescription.sdp });
      this._upgrading = false;
      this._mediaUpdated();
    } catch (error) {
      this._upgrading = false;
      this.emit('updateFailed', error);
    }
  }

  /** Puts the far end on hold: our streams become `sendonly` (a new offer through
   * `session-update`). Not in SylkServer's sylkrtc.js, where apps mute tracks instead. */
  hold() { return this._setHold(true); }

  /** Takes the far end off hold. */
  unhold() { return this._setHold(false); }

  _setHold(hold) {
    this._checkStable();
    if (hold === this.onHold) return Promise.resolve();
    this._upgrading = true;
    for (const transceiver of this._pc.getTransceivers()) {
      if (!transceiver.stopped) transceiver.direction = hold ? 'sendonly' : 'sendrecv';
    }
    this._holding = hold;
    return this._offerUpdate();
  }

  /** Sends `track` (a shared screen, from getDisplayMedia) instead of the camera; the camera's
   * track is kept for stopScreensharing(). */
  startScreensharing(track) {
    const camera = this._localStream?.getVideoTracks()[0];
    if (!camera) throw new Error('The call has no video to replace');
    return this.replaceTrack(camera, track, true, () => { this.sharingScreen = true; });
  }

  /** Sends the camera again. */
  stopScreensharing() {
    const screen = this._localStream?.getVideoTracks()[0];
    if (!screen || !this._previousTrack) return Promise.resolve();
    return this.replaceTrack(screen, this._previousTrack, false, () => { this.sharingScreen = false; });
  }

  /** Replaces `oldTrack` with `newTrack` on its sender, without renegotiation; `keep` keeps the
   * old track alive (to switch back), else it is stopped. */
  async replaceTrack(oldTrack, newTrack, keep = false, callback = null) {
    const sender = this._pc?.getSenders().find((s) => s.track === oldTrack);
    if (!sender) throw new Error('No sender has that track');
    await sender.replaceTrack(newTrack);
    if (keep) {
      this._previousTrack = oldTrack;
    } else {
      oldTrack?.stop();
      if (newTrack === this._previousTrack) this._previousTrack = null;
    }
    if (oldTrack) this._localStream.removeTrack(oldTrack);
    this._localStream.addTrack(newTrack);
    if (callback) callback(true);
  }

  _checkStable() {
    if (this.state !== 'established' && this.state !== 'accepted') throw new Error(`Call is not active: ${this.state}`);
    if (this._upgrading) throw new Error('A renegotiation is already in progress');
    if (!this._pc || this._pc.signalingState !== 'stable') {
      throw new Error(`Peer connection is not stable: ${this._pc?.signalingState}`);
    }
  }

  async _offerUpdate() {
    const pc = this._pc;
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await this.connection.request('session-update', { session: this.id, sdp: pc.localDescription.sdp });
    } catch (error) {
      await this._rollback();
      this.emit('updateFailed', error);
    }
  }

  /** Our offer was refused: back to the session as it was. */
  async _rollback() {
    const pc = this._pc;
    this._upgrading = false;
    if (this._pendingVideo && pc) {
      for (const { sender, track } of this._pendingVideo) {
        try { pc.removeTrack(sender); } catch { /* closed */ }
        this._localStream?.removeTrack(track);
      }
    }
    this._pendingVideo = null;
    this._holding = undefined;
    if (pc && pc.signalingState === 'have-local-offer') {
      try { await pc.setLocalDescription({ type: 'rollback' }); } catch { /* closed */ }
    }
  }

  _mediaUpdated() {
    this._pendingVideo = null;
    if (this._holding !== undefined) this.onHold = this._holding;
    this._holding = undefined;
    this.emit('mediaUpdated', { hasLocalVideo: this.hasLocalVideo, hasRemoteVideo: this.hasRemoteVideo, onHold: this.onHold });
  }

  getRemoteStreams() { return [this._remoteStream]; }

  /** The peer connection's statistics (RTCStatsReport). */
  getStats() { return this._pc ? this._pc.getStats() : Promise.resolve(new Map()); }

  async _event(data) {
    if (data.event === 'update') return this._update(data);
    if (data.event === 'quality') {
      // The gateway's summary of the call's audio on each leg, just before 'terminated'.
      this.quality = { codec: data.codec, duration: data.duration, browser: data.browser, sip: data.sip };
      this.emit('quality', this.quality);
      return;
    }
    if (data.event !== 'state') return;
    const state = data.state;
    if (data.call_id) this.callId = data.call_id;
    if ((state === 'accepted' || state === 'early-media') && data.sdp && this._pc && this.direction === 'outgoing'
        && this._pc.signalingState === 'have-local-offer') {
      try {
        await this._pc.setRemoteDescription({ type: 'answer', sdp: data.sdp });
      } catch (error) {
        this.terminate();
        this._terminated(`the answer could not be applied: ${error.message}`);
        return;
      }
    }
    if (state === 'terminated') {
      this._terminated(data.reason);
      return;
    }
    const extra = {};
    if (data.code) extra.code = data.code;
    if (data.reason) extra.reason = data.reason;
    this._setState(state, extra);
  }

  /** The far end's new offer (`update` `received`) is applied and told as `updateRequest`
   * ({sdp, remoteMediaDirections}); the application answers with answerUpdate(). Without a
   * listener it is answered at once. The answer to our own offer (`accepted`) is applied and
   * told as `mediaUpdated`; a refusal (`failed`) rolls our offer back and is `updateFailed`. */
  async _update(data) {
    const pc = this._pc;
    if (!pc) return;
    if (data.state === 'received' && data.sdp) {
      if (this._upgrading) {
        this.emit('updateFailed', new Error('glare'));
        return;
      }
      this._upgrading = true;
      try {
        await pc.setRemoteDescription({ type: 'offer', sdp: data.sdp });
      } catch (error) {
        this._upgrading = false;
        this.emit('updateFailed', error);
        return;
      }
      const remoteMediaDirections = mediaDirections(data.sdp);
      if (this.listens('updateRequest')) this.emit('updateRequest', { sdp: data.sdp, remoteMediaDirections });
      else await this.answerUpdate();
    } else if (data.state === 'accepted' && data.sdp && pc.signalingState === 'have-local-offer') {
      try {
        await pc.setRemoteDescription({ type: 'answer', sdp: data.sdp });
        this._upgrading = false;
        this._mediaUpdated();
      } catch (error) {
        await this._rollback();
        this.emit('updateFailed', error);
      }
    } else if (data.state === 'failed') {
      await this._rollback();
      this.emit('updateFailed', new Error(data.reason || 'update rejected'));
    }
    this.emit('update', data.state, data.reason);
  }

  _terminated(reason) {
    clearTimeout(this._endTimer);
    if (this.state === 'terminated') return;
    if (this._pc) { this._pc.close(); this._pc = null; }
    this.account.calls.delete(this.id);
    this._setState('terminated', { reason });
  }
}

/** The direction of each audio and video m-line of an SDP, as {audio: [...], video: [...]}
 * (`inactive` for a declined one). */
function mediaDirections(sdp) {
  const directions = { audio: [], video: [] };
  let kind = null;
  for (const line of sdp.split(/\r?\n/)) {
    if (line.startsWith('m=')) {
      const [media, port] = line.slice(2).split(' ');
      kind = media in directions ? media : null;
      if (kind) directions[kind].push(port === '0' ? 'inactive' : 'sendrecv');
    } else if (kind && /^a=(sendrecv|sendonly|recvonly|inactive)$/.test(line)) {
      const list = directions[kind];
      if (list[list.length - 1] !== 'inactive' || line === 'a=inactive') list[list.length - 1] = line.slice(2);
    }
  }
  return directions;
}
