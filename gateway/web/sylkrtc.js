// A client of the sylkRTC-2 protocol for browsers, as an ES module. Its API follows sylkrtc.js
// (createConnection, addAccount, register, call, incomingCall, answer, terminate, sendDtmf,
// stateChanged events) so that applications written for it port with few changes.
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

import { md5 } from './md5.js';

const PROTOCOL = 'sylkRTC-2';

/** A minimal event emitter: on, off, once, emit. */
class Emitter {
  constructor() { this._handlers = new Map(); }

  on(event, handler) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(handler);
    return this;
  }

  off(event, handler) {
    this._handlers.get(event)?.delete(handler);
    return this;
  }

  once(event, handler) {
    const wrapper = (...args) => { this.off(event, wrapper); handler(...args); };
    return this.on(event, wrapper);
  }

  emit(event, ...args) {
    for (const handler of [...(this._handlers.get(event) ?? [])]) {
      try { handler(...args); } catch (error) { console.error(`sylkrtc: ${event} handler failed`, error); }
    }
  }
}

/** An error the server answered a request with. */
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
      default:
    }
  }

  _connectionLost(reason) {
    this.registrationState = null;
    for (const call of [...this.calls.values()]) call._terminated(`connection lost: ${reason}`);
  }
}

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
    this._localStream = localStream || null;
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

  getRemoteStreams() { return [this._remoteStream]; }

  /** The peer connection's statistics (RTCStatsReport). */
  getStats() { return this._pc ? this._pc.getStats() : Promise.resolve(new Map()); }

  async _event(data) {
    if (data.event === 'update') return this._update(data);
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

  /** The far end changed the session (hold, resume): its offer is answered at once, as
   * sylkrtc.js's answerUpdate() would; the answer to our own update is applied. */
  async _update(data) {
    const pc = this._pc;
    if (!pc) return;
    try {
      if (data.state === 'received' && data.sdp) {
        await pc.setRemoteDescription({ type: 'offer', sdp: data.sdp });
        const answer = await pc.createAnswer();
        await pc.setLocalDescription(answer);
        await this.connection.request('session-update', { session: this.id, sdp: pc.localDescription.sdp });
      } else if (data.state === 'accepted' && data.sdp && pc.signalingState === 'have-local-offer') {
        await pc.setRemoteDescription({ type: 'answer', sdp: data.sdp });
      } else if (data.state === 'failed' && pc.signalingState === 'have-local-offer') {
        await pc.setLocalDescription({ type: 'rollback' });
      }
    } catch (error) {
      console.warn(`sylkrtc: update ${data.state}: ${error.message}`);
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
