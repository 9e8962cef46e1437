import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Cluster, Redis } from 'ioredis';
import { ACQUIRE_SCRIPT } from './scripts/acquire.script';
import { EXTEND_SCRIPT } from './scripts/extend.script';
import { RELEASE_SCRIPT } from './scripts/release.script';

const PACKAGE_NAME = 'nestjs-distributed-lock';

/** This package's version, read from its package.json (found by walking up from this file). */
function packageVersion(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      try {
        const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === PACKAGE_NAME && typeof pkg.version === 'string') return pkg.version;
      } catch {
        // Not ours or unreadable: keep looking.
      }
    }
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return 'unknown';
}

/**
 * The names the scripts are registered under with `defineCommand`. They carry the package version,
 * so two versions of this package sharing one client never run each other's scripts.
 */
export const LOCK_COMMANDS = (() => {
  const tag = `distributedLock_${packageVersion().replace(/[^0-9A-Za-z]/g, '_')}`;
  return { acquire: `${tag}_acquire`, extend: `${tag}_extend`, release: `${tag}_release` } as const;
})();

type ScriptCall = (...args: Array<string | number>) => Promise<unknown>;

/** A client (or pipeline) with the lock scripts defined on it. */
export type LockScriptHost = Record<string, ScriptCall>;

/** One lock script: its registered name, source, SHA-1 (for EVALSHA) and number of keys. */
export interface LockScript {
  readonly name: string;
  readonly lua: string;
  readonly sha: string;
  readonly numberOfKeys: number;
}

function lockScript(name: string, lua: string, numberOfKeys: number): LockScript {
  return { name, lua, sha: createHash('sha1').update(lua).digest('hex'), numberOfKeys };
}

/** The lock scripts, under their registered names. */
export const LOCK_SCRIPTS = {
  acquire: lockScript(LOCK_COMMANDS.acquire, ACQUIRE_SCRIPT, 4),
  extend: lockScript(LOCK_COMMANDS.extend, EXTEND_SCRIPT, 1),
  release: lockScript(LOCK_COMMANDS.release, RELEASE_SCRIPT, 4),
} as const;

/**
 * Defines the lock scripts on a client (pipelines use them under these names). ioredis sends them
 * as EVALSHA and falls back to EVAL when the server answers NOSCRIPT, so a `SCRIPT FLUSH` or a
 * restarted server costs one extra send.
 */
export function defineLockScripts(client: Redis | Cluster): void {
  const host = client as unknown as LockScriptHost;
  for (const script of Object.values(LOCK_SCRIPTS)) {
    if (typeof host[script.name] !== 'function') {
      client.defineCommand(script.name, { numberOfKeys: script.numberOfKeys, lua: script.lua });
    }
  }
}
