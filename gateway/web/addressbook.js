// The address book, as sylkrtc.js models it: one per connection (connection.addressbook),
// fetched for each account once it is registered and kept by the gateway; contacts, groups
// and policies added, updated or deleted for every account of the connection. Events:
// `updated` (after a fetch or a change, from this tab or another) and, per account, the
// gateway's `presence` extension (account.on('presence', (contact, state) => ...)).

import { Emitter } from './emitter.js';

const KINDS = { contact: 'contacts', group: 'groups', policy: 'policies' };

export class Addressbook extends Emitter {
  constructor(connection) {
    super();
    this._connection = connection;
    this._items = { contacts: new Map(), groups: new Map(), policies: new Map() };
  }

  get contacts() { return [...this._items.contacts.values()]; }

  get groups() { return [...this._items.groups.values()]; }

  get policies() { return [...this._items.policies.values()]; }

  getContact(id) { return this._items.contacts.get(id) || null; }

  addContact(contact, cb = null) { return this._apply('add', 'contact', contact, cb); }

  updateContact(contact, cb = null) { return this._apply('update', 'contact', contact, cb); }

  deleteContact(id, cb = null) {
    return this._apply('delete', 'contact', this.getContact(id) || { id }, cb);
  }

  addPolicy(policy, cb = null) { return this._apply('add', 'policy', policy, cb); }

  deletePolicy(id, cb = null) {
    return this._apply('delete', 'policy', this._items.policies.get(id) || { id }, cb);
  }

  /** The change for every account of the connection; a promise, and `cb(error)`. */
  _apply(action, type, data, cb) {
    if (!data?.id) {
      const error = new Error(`No ${type} provided`);
      cb?.(error);
      return Promise.reject(error);
    }
    this._set(action, type, data);
    const requests = [...this._connection.accounts.values()].map((account) =>
      this._connection.request('account-update-addressbook', { account: account.id, action, type, data }));
    const done = Promise.all(requests);
    done.then(() => cb?.(null), (error) => cb?.(error));
    return done;
  }

  _set(action, type, data) {
    const items = this._items[KINDS[type]];
    if (!items) return;
    if (action === 'delete') items.delete(data.id);
    else items.set(data.id, data);
    this.emit('updated');
  }

  /** An account event about the address book; false for any other. */
  _event(data) {
    switch (data.event) {
      case 'addressbook-fetched':
        for (const [kind, list] of Object.entries(KINDS)) {
          for (const item of data.addressbook?.[list] || []) this._items[KINDS[kind]].set(item.id, item);
        }
        this.emit('updated');
        return true;
      case 'addressbook-updated':
        this._set(data.action, data.type, data[data.type] || {});
        return true;
      case 'addressbook-update-failed':
        this.emit('updateFailed', { type: data.type, action: data.action, error: data.error, id: data.id });
        return true;
      default:
        return false;
    }
  }
}
