// A server-sent events reader for the agent's MCP responses: the `data` of each event, as it
// completes. Comments (keep-alives), `id`, `event` and `retry` fields carry nothing the gate
// uses. One event larger than `maxEventBytes` is McpMessageTooLarge, so that a stream without blank lines
// cannot grow a buffer without bound.
//
// The cost is linear in the bytes received, however the agent cuts them: each byte is scanned
// for a line end once, a line cut across chunks is kept as the pieces it came in and joined once
// when it ends, and nothing already read is scanned or copied again. Lines are split on bytes
// (CR and LF never occur inside a UTF-8 sequence) and decoded whole.

import { McpMessageTooLarge } from '../domain/failures.js';

const LF = 0x0a;
const CR = 0x0d;
const COLON = 0x3a;
const SPACE = 0x20;
const DATA = Buffer.from('data', 'latin1');

export class SseReader {
  /** The line being read, in the pieces it arrived in. */
  #partial: Buffer[] = [];
  #partialBytes = 0;
  /** The last chunk ended with CR: an LF that starts the next one ends the same line. */
  #afterCR = false;
  #data: string[] = [];
  #dataBytes = 0;

  constructor(private readonly maxEventBytes: number) {}

  /** The data of every event this chunk completes. */
  push(chunk: Buffer): string[] {
    const events: string[] = [];
    let pos = 0;
    if (this.#afterCR) {
      this.#afterCR = false;
      if (chunk[0] === LF) pos = 1;
    }
    // The next CR and LF at or after `pos`, each found once per chunk position (-1: none left).
    let nextLF = chunk.indexOf(LF, pos);
    let nextCR = chunk.indexOf(CR, pos);
    while (nextLF !== -1 || nextCR !== -1) {
      const end = nextLF === -1 ? nextCR : nextCR === -1 ? nextLF : Math.min(nextLF, nextCR);
      const piece = chunk.subarray(pos, end);
      const line = this.#partialBytes === 0 ? piece : Buffer.concat([...this.#partial, piece], this.#partialBytes + piece.length);
      this.#partial = [];
      this.#partialBytes = 0;
      const event = this.#line(line);
      if (event !== undefined) events.push(event);
      pos = end + 1;
      if (chunk[end] === CR) {
        if (pos === chunk.length) this.#afterCR = true;
        else if (chunk[pos] === LF) pos += 1;
      }
      if (nextLF !== -1 && nextLF < pos) nextLF = chunk.indexOf(LF, pos);
      if (nextCR !== -1 && nextCR < pos) nextCR = chunk.indexOf(CR, pos);
    }
    if (pos < chunk.length) {
      this.#partial.push(chunk.subarray(pos));
      this.#partialBytes += chunk.length - pos;
    }
    if (this.#partialBytes + this.#dataBytes > this.maxEventBytes) throw new McpMessageTooLarge(this.maxEventBytes);
    return events;
  }

  #line(line: Buffer): string | undefined {
    if (line.length === 0) {
      if (this.#data.length === 0) return undefined;
      const data = this.#data.join('\n');
      this.#data = [];
      this.#dataBytes = 0;
      return data;
    }
    // Only `data` lines carry anything: the others (comments among them) are not decoded.
    const isData = line.length >= 4 && line.compare(DATA, 0, 4, 0, 4) === 0 && (line.length === 4 || line[4] === COLON);
    if (!isData) return undefined;
    let start = 5;
    if (line[start] === SPACE) start += 1;
    this.#dataBytes += line.length + 1;
    if (this.#dataBytes > this.maxEventBytes) throw new McpMessageTooLarge(this.maxEventBytes);
    this.#data.push(line.length > start ? line.toString('utf8', start) : '');
    return undefined;
  }
}
