// Delivers state-transition events to this process's subscribers (token cache, connection
// cache), whether they come from this process's own writes or from another replica's NOTIFY.
import { EventEmitter } from 'node:events';
import type { CancelNotice, GateEvent } from './domain/events.js';

export class EventHub {
  readonly #emitter = new EventEmitter<{ event: [GateEvent]; cancel: [CancelNotice]; resync: [] }>();

  /** Applies an event locally; applying one twice (own write, then its NOTIFY) is harmless. */
  apply(event: GateEvent): void {
    this.#emitter.emit('event', event);
  }

  /** Notifications may have been missed: subscribers drop what they cannot re-check. */
  resync(): void {
    this.#emitter.emit('resync');
  }

  onEvent(handler: (event: GateEvent) => void): void {
    this.#emitter.on('event', handler);
  }

  onResync(handler: () => void): void {
    this.#emitter.on('resync', handler);
  }

  /** An MCP cancel from a replica where it matched no call (this one's own included). */
  cancel(notice: CancelNotice): void {
    this.#emitter.emit('cancel', notice);
  }

  onCancel(handler: (notice: CancelNotice) => void): void {
    this.#emitter.on('cancel', handler);
  }
}
