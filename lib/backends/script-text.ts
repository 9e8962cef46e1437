import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The text of a SQL or Lua file shipped beside the code that sends it (`lib/` when run from the
 * sources, `dist/` in the package: the build copies them). Read once, when the backend is made.
 */
export function readScriptFile(dir: string, file: string): string {
  return readFileSync(join(dir, file), 'utf8');
}

/** A short digest of script texts: the version in the names of scripts and SQL functions, never bumped by hand. */
export function textDigest(...texts: string[]): string {
  const hash = createHash('sha256');
  for (const text of texts) hash.update(text).update('\0');
  return hash.digest('hex').slice(0, 12);
}
