import { posix } from 'node:path';
import { readScriptFile } from '../script-text';

/** A line that asks for an include (checked further by INCLUDE). */
const INCLUDE_LINE = /^\s*--- @include\b/;
/** `--- @include "<path>"`, the path relative to the including file, `.lua` optional. */
const INCLUDE = /^\s*--- @include "([^"]+)"\s*$/;

/**
 * The text of the Lua script `file` (a path relative to `dir`) with its includes resolved, as
 * BullMQ writes them: each line `--- @include "<path>"` is replaced by the text of that file
 * (relative to the file that includes it, `.lua` added when missing), itself resolved the same way.
 *
 * An include is pasted where it stands, every time it is named: the shared parts are pieces of a
 * script's body that read and set the script's own locals, not Lua functions (a local function is
 * a new closure on every call of a script, which costs Redis more than the code it saves). A
 * missing file, a malformed include line or a file that includes itself (directly or through
 * others) is an error that names the file and line.
 */
export function resolveLuaIncludes(
  dir: string,
  file: string,
  read: (dir: string, file: string) => string = readScriptFile,
): string {
  return resolve(dir, posix.normalize(file), [], read);
}

function resolve(dir: string, file: string, including: string[], read: (dir: string, file: string) => string): string {
  const text = read(dir, file);
  const chain = [...including, file];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!INCLUDE_LINE.test(lines[i])) continue;
    const where = `${file} line ${i + 1}`;
    const match = INCLUDE.exec(lines[i]);
    if (!match)
      throw new Error(
        `Lua script ${where}: malformed include ${JSON.stringify(lines[i].trim())}; expected --- @include "<path>"`,
      );
    const target = posix.join(posix.dirname(file), match[1].endsWith('.lua') ? match[1] : `${match[1]}.lua`);
    if (chain.includes(target)) {
      throw new Error(`Lua script ${where}: include cycle ${[...chain, target].join(' -> ')}`);
    }
    let included: string;
    try {
      included = resolve(dir, target, chain, read);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      throw new Error(`Lua script ${where}: included file "${match[1]}" not found (${posix.join(dir, target)})`, {
        cause: error,
      });
    }
    lines[i] = included.endsWith('\n') ? included.slice(0, -1) : included;
  }
  return lines.join('\n');
}
