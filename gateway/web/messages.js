// The messages of an account, as sylkrtc.js models them: Account.sendMessage (returns a
// Message whose state goes pending -> accepted -> delivered -> displayed, or failed),
// sendDispositionNotification, syncConversations, markConversationRead, removeMessage,
// removeConversation, checkIfKeyExists and setDeviceToken, and the events incomingMessage,
// messageStateChanged, sendingMessage, outgoingMessage (sent from another device),
// syncConversations, removeMessage, readConversation and removeConversation.

import { Emitter } from './emitter.js';

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return 'xxxxxxxx-xxxx-4xxx-8xxx-xxxxxxxxxxxx'.replace(/x/g, () => ((Math.random() * 16) | 0).toString(16));
}

/** How far a state is along a message's way. */
function rank(state) {
  return { pending: 0, accepted: 1, stored: 1, processed: 1, failed: 2, forbidden: 2, error: 2, delivered: 3, displayed: 4 }[state] ?? 0;
}

/** One message, sent or received. */
export class Message extends Emitter {
  constructor({ id, content, contentType, sender, receiver, timestamp, state, dispositionNotification, direction }) {
    super();
    /** 'incoming' or 'outgoing'. */
    this.direction = direction || (state === 'received' ? 'incoming' : 'outgoing');
    this.id = id || uuid();
    this.content = content;
    this.contentType = contentType || 'text/plain';
    /** { uri, displayName } */
    this.sender = sender;
    /** The recipient's address. */
    this.receiver = receiver;
    this.timestamp = timestamp instanceof Date ? timestamp : new Date(timestamp || Date.now());
    this.state = state || null;
    this.dispositionNotification = dispositionNotification || [];
    /** What this side told the sender (delivered, displayed), for received messages. */
    this.dispositionState = null;
  }

  _setState(state, data) {
    // States only move forward (a late "accepted" after "displayed" changes nothing), as the
    // gateway's store keeps them.
    if (!state || state === this.state || rank(state) < rank(this.state)) return;
    const old = this.state;
    this.state = state;
    this.emit('stateChanged', old, state, data || {});
  }

  _setDispositionState(state) {
    this.dispositionState = state;
  }
}

/** The methods sylkrtc.js's Account has for messages; mixed into Account. */
export const messaging = {
  _messagesById() {
    if (!this._messages) this._messages = new Map();
    return this._messages;
  },

  _request(name, fields, cb) {
    const done = this._connection.request(name, { account: this.id, ...fields });
    done.then(() => cb?.(null), (error) => cb?.(error));
    return done;
  },

  /** Sends `content` to `uri`; the returned Message's state follows what becomes of it. */
  sendMessage(uri, content, contentType = 'text/plain', options = {}, cb = null) {
    const message = new Message({
      id: options.id,
      content,
      contentType,
      sender: { uri: this.id, displayName: this.displayName },
      receiver: uri,
      timestamp: options.timestamp || new Date().toISOString(),
      state: 'pending',
    });
    this._messagesById().set(message.id, message);
    this.emit('sendingMessage', message);
    this._request('account-message', {
      uri,
      message_id: message.id,
      content,
      content_type: contentType,
      timestamp: message.timestamp.toISOString(),
    }, (error) => {
      if (error) message._setState('failed', { reason: error.message });
      cb?.(error);
    }).catch(() => {});
    return message;
  },

  /** Tells `uri` that its message `id` (sent at `timestamp`) is now `state`. */
  sendDispositionNotification(uri, id, timestamp, state, cb = null) {
    const fields = { uri, message_id: id, state };
    if (timestamp) fields.timestamp = timestamp instanceof Date ? timestamp.toISOString() : timestamp;
    return this._request('account-disposition-notification', fields, (error) => {
      if (!error) this._messagesById().get(id)?._setDispositionState(state);
      this.emit('sendingDispositionNotification', id, state, error);
      cb?.(error);
    }).catch(() => {});
  },

  /** Asks for the stored messages after `id` (all when null): they come as syncConversations. */
  syncConversations(id = null, cb = null) {
    const fields = id ? { message_id: id } : {};
    return this._request('account-sync-conversations', fields, cb).catch(() => {});
  },

  markConversationRead(contact) {
    this._request('account-mark-conversation-read', { contact }).catch(() => {});
    this.emit('readConversation', contact);
  },

  removeMessage(message, cb = null) {
    this._messagesById().delete(message.id);
    const contact = message.direction === 'incoming' ? message.sender.uri : message.receiver;
    return this._request('account-remove-message', { message_id: message.id, contact }, cb).catch(() => {});
  },

  removeConversation(uri, cb = null) {
    for (const [id, message] of this._messagesById()) {
      if (message.receiver === uri || message.sender?.uri === uri) this._messagesById().delete(id);
    }
    return this._request('account-remove-conversation', { contact: uri }, cb).catch(() => {});
  },

  /** Calls back with the account's published public key, or null when none is known. */
  checkIfKeyExists(cb = null) {
    return this._connection.lookupPublicKey(this.id).then((key) => { cb?.(key); return key; });
  },

  setDeviceToken(token, platform, device, silent, app) {
    return this._request('account-devicetoken', { token, platform, device, silent, app }).catch(() => {});
  },

  /** An account event about messages; false for any other. */
  _messageEvent(data) {
    switch (data.event) {
      case 'message': {
        const message = new Message({
          id: data.message_id,
          content: data.content,
          contentType: data.content_type,
          sender: { uri: data.sender?.uri, displayName: data.sender?.display_name || '' },
          receiver: this.id,
          timestamp: data.timestamp,
          state: 'received',
          dispositionNotification: data.disposition_notification,
        });
        this._messagesById().set(message.id, message);
        this.emit('incomingMessage', message);
        return true;
      }
      case 'disposition-notification': {
        const about = { reason: data.reason, code: data.code };
        const message = this._messagesById().get(data.message_id);
        message?._setState(data.state, about);
        this.emit('messageStateChanged', data.message_id, message?.state || data.state, about);
        return true;
      }
      case 'sync-conversations': {
        const list = (data.messages || []).map((stored) => {
          const incoming = stored.direction === 'incoming';
          const message = new Message({
            id: stored.message_id,
            content: stored.content,
            contentType: stored.content_type,
            sender: incoming ? { uri: stored.contact, displayName: '' } : { uri: this.id, displayName: this.displayName },
            receiver: incoming ? this.id : stored.contact,
            timestamp: stored.timestamp,
            state: stored.state,
            dispositionNotification: stored.disposition,
            direction: stored.direction,
          });
          if (!stored.content_type?.startsWith('application/sylk-') && stored.content_type !== 'message/imdn') {
            this._messagesById().set(message.id, message);
          }
          return message;
        });
        this.emit('syncConversations', list);
        return true;
      }
      case 'sync': {
        const content = data.content || {};
        if (data.type === 'message' && data.action === 'add') {
          const message = new Message({
            id: content.message_id,
            content: content.content,
            contentType: content.content_type,
            sender: { uri: this.id, displayName: this.displayName },
            receiver: content.uri,
            timestamp: content.timestamp,
            state: 'pending',
          });
          this._messagesById().set(message.id, message);
          this.emit('outgoingMessage', message);
        } else if (data.type === 'message' && data.action === 'remove') {
          const message = this._messagesById().get(content.message_id)
            || new Message({ id: content.message_id, receiver: content.contact, sender: { uri: content.contact } });
          this._messagesById().delete(content.message_id);
          this.emit('removeMessage', message);
        } else if (data.type === 'conversation' && data.action === 'read') {
          this.emit('readConversation', content.contact);
        } else if (data.type === 'conversation' && data.action === 'remove') {
          this.emit('removeConversation', content.contact);
        }
        return true;
      }
      default:
        return false;
    }
  },
};
