// The event emitter the client's objects share.

/** A minimal event emitter: on, off, once, emit. */
export class Emitter {
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

  /** Whether anyone listens to `event`. */
  listens(event) { return (this._handlers.get(event)?.size ?? 0) > 0; }

  emit(event, ...args) {
    for (const handler of [...(this._handlers.get(event) ?? [])]) {
      try { handler(...args); } catch (error) { console.error(`sylkrtc: ${event} handler failed`, error); }
    }
  }
}

/** An error the server answered a request with. */
