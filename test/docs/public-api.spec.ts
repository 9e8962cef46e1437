import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ts from 'typescript';
import * as root from '../../lib';
import * as postgres from '../../lib/postgres';
import * as redis from '../../lib/redis';

/**
 * The public API is exactly what the README documents: every name that an entry point of the
 * package exports (values and types) appears in the README as code (`name`), and the entry points
 * are the ones package.json publishes. A new export the README does not name fails here.
 */
const ROOT = join(__dirname, '..', '..');
const ENTRIES: Record<string, string> = {
  '.': 'lib/index.ts',
  './redis': 'lib/redis.ts',
  './postgres': 'lib/postgres.ts',
  './testing': 'lib/testing.ts',
  './terminus': 'lib/terminus.ts',
};

function exportedNames(file: string): string[] {
  const program = ts.createProgram([join(ROOT, file)], {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: ['node'],
  });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(join(ROOT, file))!;
  const symbol = checker.getSymbolAtLocation(source)!;
  return checker
    .getExportsOfModule(symbol)
    .map((s) => s.getName())
    .sort();
}

describe('the public API', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const documented = new Set(
    [...readme.matchAll(/`([^`\n]+)`/g)].flatMap((m) => m[1].match(/[A-Za-z_$][\w$]*/g) ?? []),
  );

  it('publishes exactly these entry points', () => {
    const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      exports: Record<string, unknown>;
    };
    expect(
      Object.keys(manifest.exports)
        .filter((entry) => entry !== './package.json')
        .sort(),
    ).toEqual(Object.keys(ENTRIES).sort());
  });

  it.each(Object.entries(ENTRIES))(
    'names in the README every export of %s',
    (_entry, file) => {
      const names = exportedNames(file);
      expect(names.length).toBeGreaterThan(0);
      expect(names.filter((name) => !documented.has(name))).toEqual([]);
    },
    60_000,
  );

  it('keeps classes whose constructors users cannot call out of the root and backend entries', () => {
    const all = [...Object.keys(root), ...Object.keys(redis), ...Object.keys(postgres)];
    for (const internal of [
      'DistributedLockService',
      'MemoryLockBackend',
      'RedisLockBackend',
      'RedisQuorumLockBackend',
      'PostgresLockBackend',
    ]) {
      expect(all).not.toContain(internal);
    }
  });
});
