import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Cluster, Redis } from 'ioredis';
import { textDigest } from '../script-text';
import { resolveLuaIncludes } from './redis-script-includes';

/** Where the scripts are: `scripts/` beside this file (in `lib/`, or in `dist/`, where the build copies them). */
const SCRIPTS_DIR = join(__dirname, 'scripts');

type ScriptCall = (...args: Array<string | number>) => Promise<unknown>;

/** A client (or pipeline) with the lock scripts defined on it. */
export type LockScriptHost = Record<string, ScriptCall>;

/** One lock script: its registered name, source (includes resolved), SHA-1 (for EVALSHA) and number of keys. */
export interface LockScript {
  readonly name: string;
  readonly lua: string;
  readonly sha: string;
  readonly numberOfKeys: number;
}

/** The lock scripts: `scripts/acquire-7.lua`, `scripts/extend-3.lua`, `scripts/release-7.lua`. */
export interface LockScripts {
  readonly acquire: LockScript;
  readonly extend: LockScript;
  readonly release: LockScript;
}

/**
 * Reads `scripts/<command>-<number of keys>.lua` and resolves its includes. Its name carries a
 * digest of that text (`distributedLock_acquire_<digest>`), so two versions of this package with
 * different scripts, sharing one client or one server, never run each other's scripts.
 */
export function loadLockScript(file: string, dir = SCRIPTS_DIR): LockScript {
  const parts = /^([a-z]+)-(\d+)\.lua$/.exec(file);
  if (!parts) throw new Error(`Lua script ${file}: expected a name <command>-<number of keys>.lua`);
  const lua = resolveLuaIncludes(dir, file);
  const numberOfKeys = Number(parts[2]);
  return {
    name: `distributedLock_${parts[1]}_${textDigest(parts[2], lua)}`,
    lua,
    sha: createHash('sha1').update(lua).digest('hex'),
    numberOfKeys,
  };
}

let loaded: LockScripts | undefined;

/** The lock scripts, read from their files the first time a backend asks for them. */
export function lockScripts(): LockScripts {
  loaded ??= {
    acquire: loadLockScript('acquire-7.lua'),
    extend: loadLockScript('extend-3.lua'),
    release: loadLockScript('release-7.lua'),
  };
  return loaded;
}

/**
 * Defines the lock scripts on a client (pipelines use them under these names). ioredis sends them
 * as EVALSHA and falls back to EVAL when the server answers NOSCRIPT, so a `SCRIPT FLUSH` or a
 * restarted server costs one extra send.
 */
export function defineLockScripts(client: Redis | Cluster, scripts: LockScripts): void {
  const host = client as unknown as LockScriptHost;
  for (const script of [scripts.acquire, scripts.extend, scripts.release]) {
    if (typeof host[script.name] !== 'function') {
      client.defineCommand(script.name, { numberOfKeys: script.numberOfKeys, lua: script.lua });
    }
  }
}
