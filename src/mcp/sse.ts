// A server-sent events reader for the agent's MCP responses: the `data` of each event, as it
// completes. Comments (keep-alives), `id`, `event` and `retry` fields carry nothing the gate
// uses. One event larger than `maxEventBytes` is an error, so that a stream without blank lines
// cannot grow a buffer without bound.
import { StringDecoder } from 'node:string_decoder';

export class SseEventTooLarge extends Error {
  override name = 'SseEventTooLarge';
}

export class SseReader {
  readonly #decoder = new StringDecoder('utf8');
  #buffer = '';
  #data: string[] = [];
  #dataChars = 0;

  constructor(private readonly maxEventBytes: number) {}

  /** The data of every event this chunk completes. */
  push(chunk: Buffer): string[] {
    this.#buffer += this.#decoder.write(chunk);
    const events: string[] = [];
    for (;;) {
      const end = this.#buffer.search(/\r\n|\r|\n/);
      if (end === -1) break;
      const line = this.#buffer.slice(0, end);
      const eol = this.#buffer.startsWith('\r\n', end) ? 2 : 1;
      // A lone \r at the end of a chunk may be the first half of \r\n: wait for the next one.
      if (eol === 1 && this.#buffer[end] === '\r' && end === this.#buffer.length - 1) break;
      this.#buffer = this.#buffer.slice(end + eol);
      const event = this.#line(line);
      if (event !== undefined) events.push(event);
    }
    if (this.#buffer.length + this.#dataChars > this.maxEventBytes) throw new SseEventTooLarge(`an event is larger than ${this.maxEventBytes} bytes`);
    return events;
  }

  #line(line: string): string | undefined {
    if (line === '') {
      if (this.#data.length === 0) return undefined;
      const data = this.#data.join('\n');
      this.#data = [];
      this.#dataChars = 0;
      return data;
    }
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    if (field !== 'data') return undefined;
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    this.#data.push(value);
    this.#dataChars += value.length + 1;
    return undefined;
  }
}
