// Confinement of the reference agent's file and process access to its --root directory.
// Paths are resolved against the root and then through symlinks: a link that points outside
// the root is refused, wherever in the path it sits.
import { realpath } from 'node:fs/promises';
import path from 'node:path';

export class OutsideRoot extends Error {
  override name = 'OutsideRoot';
}

function inside(root: string, candidate: string): boolean {
  const rel = path.relative(root, candidate);
  // `..foo` is a name inside the root; only `..` itself or `../…` leaves it.
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

/**
 * The real path of `requested` (relative to root, or absolute inside it). For a path that does
 * not exist yet (a file about to be written), its parent must exist and be inside the root.
 */
export async function resolveInRoot(realRoot: string, requested: string, options: { mayNotExist?: boolean } = {}): Promise<string> {
  if (requested.includes('\0')) throw new OutsideRoot('the path contains a NUL byte');
  const lexical = path.resolve(realRoot, requested);
  if (!inside(realRoot, lexical)) throw new OutsideRoot('the path leaves the root');
  try {
    const real = await realpath(lexical);
    if (!inside(realRoot, real)) throw new OutsideRoot('the path leads outside the root through a symlink');
    return real;
  } catch (error) {
    if (error instanceof OutsideRoot) throw error;
    if (!options.mayNotExist || (error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    const parent = await realpath(path.dirname(lexical));
    if (!inside(realRoot, parent)) throw new OutsideRoot('the path leads outside the root through a symlink');
    return path.join(parent, path.basename(lexical));
  }
}
