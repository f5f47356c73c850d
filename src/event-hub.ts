// Delivers state-transition events to this process's subscribers (token cache, connection
// cache, work in flight), telling apart a transition this process wrote itself (committed, so
// trusted) from one a notification announced (a hint: anyone who can connect to the database
// can send one).
import { EventEmitter } from 'node:events';
import type { CancelNotice, GateEvent } from './domain/events.js';

/** Where an event comes from: this process's own committed write, or a NOTIFY. */
export type EventOrigin = 'local' | 'notification';

export class EventHub {
  readonly #emitter = new EventEmitter<{ event: [GateEvent, EventOrigin]; cancel: [CancelNotice]; resync: [] }>();

  /** A transition this process wrote and committed; applying one twice (own write, then its NOTIFY) is harmless. */
  apply(event: GateEvent): void {
    this.#emitter.emit('event', event, 'local');
  }

  /** A transition a notification announced. */
  notified(event: GateEvent): void {
    this.#emitter.emit('event', event, 'notification');
  }

  /** Notifications may have been missed: subscribers drop what they cannot re-check. */
  resync(): void {
    this.#emitter.emit('resync');
  }

  onEvent(handler: (event: GateEvent, origin: EventOrigin) => void): void {
    this.#emitter.on('event', handler);
  }

  onResync(handler: () => void): void {
    this.#emitter.on('resync', handler);
  }

  /** An MCP cancel recorded by a replica where it matched no call (this one's own included). */
  cancel(notice: CancelNotice): void {
    this.#emitter.emit('cancel', notice);
  }

  onCancel(handler: (notice: CancelNotice) => void): void {
    this.#emitter.on('cancel', handler);
  }
}
