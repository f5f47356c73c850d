// `npm run docs:errors`: writes docs/errors.md from the error catalogue (src/domain/errors-doc.ts),
// through the compiled output, which it compiles first when it is stale.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const root = path.resolve(import.meta.dirname, '..');
execFileSync(process.execPath, [path.join(root, 'scripts/build-if-stale.mjs')], { stdio: 'inherit' });
const { renderErrorsDoc } = await import(pathToFileURL(path.join(root, 'dist/src/domain/errors-doc.js')).href);
const target = path.join(root, 'docs/errors.md');
mkdirSync(path.dirname(target), { recursive: true });
writeFileSync(target, renderErrorsDoc());
process.stdout.write('wrote docs/errors.md\n');
