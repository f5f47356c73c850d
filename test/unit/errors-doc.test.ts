// docs/errors.md is generated from the catalogue (npm run docs:errors): it must be current, and
// say for every code its status, whether it is retryable, its meaning, its hint and what to do.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CATALOGUE, ERROR_GUIDE, type ErrorCode } from '../../src/domain/errors.js';
import { CLIENT_ERROR_CODES } from '../../src/domain/client-codes.js';
import { renderErrorsDoc } from '../../src/domain/errors-doc.js';
import * as client from '../../src/client/index.js';

const root = path.resolve(import.meta.dirname, '../..');
const committed = readFileSync(path.join(root, 'docs/errors.md'), 'utf8');
const rendered = renderErrorsDoc();
const codes = Object.keys(ERROR_CATALOGUE) as ErrorCode[];

/** The text of one code's section: from its heading to the next. */
function section(doc: string, heading: string): string {
  const start = doc.indexOf(`\n${heading}\n`);
  if (start < 0) return '';
  const next = doc.slice(start + heading.length + 2).search(/\n#{2,3} /);
  return next < 0 ? doc.slice(start) : doc.slice(start, start + heading.length + 2 + next);
}

describe('docs/errors.md', () => {
  it('is current', () => {
    expect(committed, 'docs/errors.md is stale: run npm run docs:errors').toBe(rendered);
  });

  it.each(codes)('%s: status, retryable, meaning, hint and what to do', (code) => {
    const entry: { status: number; retryable: boolean; hint?: string } = ERROR_CATALOGUE[code];
    const text = section(rendered, `## ${code}`);
    expect(text, `no section for ${code}`).not.toBe('');
    expect(text).toContain(`${entry.status}, ${entry.retryable ? 'retryable' : 'not retryable'}`);
    expect(text).toContain(`**When.** ${ERROR_GUIDE[code].meaning}`);
    expect(text).toContain(`**What a chat server should do.** ${ERROR_GUIDE[code].chatServer}`);
    expect(text).toContain(entry.hint === undefined ? '**Hint for the model.** None' : `**Hint for the model.** “${entry.hint}”`);
    const row = rendered.split('\n').find((line) => line.startsWith(`| [\`${code}\`]`));
    expect(row).toBe(`| [\`${code}\`](#${code.toLowerCase()}) | ${entry.status} | ${entry.retryable ? 'yes' : 'no'} | \`${client.errorClassName(code)}\` |`);
    // The class the table names is the one agentgate/client exports.
    expect((client as Record<string, unknown>)[client.errorClassName(code)]).toBeTypeOf('function');
  });

  it.each(Object.keys(CLIENT_ERROR_CODES))('the client code %s has its section', (code) => {
    const text = section(rendered, `### ${code}`);
    expect(text).toContain(CLIENT_ERROR_CODES[code as keyof typeof CLIENT_ERROR_CODES].hint);
    expect(Object.hasOwn(ERROR_CATALOGUE, code)).toBe(false);
  });

  it('the guide has no entry for a code the catalogue lacks', () => {
    expect(Object.keys(ERROR_GUIDE).sort()).toEqual([...codes].sort());
  });
});
