import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { loadLockScript, lockScripts } from '../../lib/backends/redis/redis-lock.scripts';
import { resolveLuaIncludes } from '../../lib/backends/redis/redis-script-includes';
import { textDigest } from '../../lib/backends/script-text';

const SCRIPTS = join(__dirname, '../../lib/backends/redis/scripts');

describe('resolveLuaIncludes', () => {
  let dir: string;
  const write = (files: Record<string, string>): void => {
    for (const [file, text] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, file)), { recursive: true });
      writeFileSync(join(dir, file), text);
    }
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'lua-includes-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('replaces each include line by the included text, relative to the including file, nested and repeated', () => {
    write({
      'main-1.lua': 'local a = 1\n  --- @include "parts/one"\n--- @include "parts/one.lua"\nreturn a\n',
      'parts/one.lua': '-- one\n--- @include "two"\n',
      'parts/two.lua': 'a = a + 1\n',
    });
    expect(resolveLuaIncludes(dir, 'main-1.lua')).toBe('local a = 1\n-- one\na = a + 1\n-- one\na = a + 1\nreturn a\n');
  });

  it('leaves a file without includes as it is, and ordinary comments alone', () => {
    write({
      'plain-1.lua': '-- @include "not an include: two dashes"\n--[[ --- @include "inside a header" ]]\nreturn 1',
    });
    expect(resolveLuaIncludes(dir, 'plain-1.lua')).toBe(readFileSync(join(dir, 'plain-1.lua'), 'utf8'));
  });

  it('fails on a missing include, naming the including file, the line and the path it looked for', () => {
    write({ 'main-1.lua': 'local a = 1\n--- @include "parts/one"\n', 'parts/one.lua': '\n\n--- @include "gone"\n' });
    expect(() => resolveLuaIncludes(dir, 'main-1.lua')).toThrow(
      `Lua script parts/one.lua line 3: included file "gone" not found (${join(dir, 'parts/gone.lua')})`,
    );
  });

  it('fails on an include cycle, direct or through other files, instead of looping', () => {
    write({
      'self-1.lua': '--- @include "self-1"\n',
      'a-1.lua': '--- @include "b"\n',
      'b.lua': 'x = 1\n--- @include "a-1"\n',
    });
    expect(() => resolveLuaIncludes(dir, 'self-1.lua')).toThrow(
      'Lua script self-1.lua line 1: include cycle self-1.lua -> self-1.lua',
    );
    expect(() => resolveLuaIncludes(dir, 'a-1.lua')).toThrow(
      'Lua script b.lua line 2: include cycle a-1.lua -> b.lua -> a-1.lua',
    );
  });

  it('fails on a malformed include line', () => {
    write({ 'bad-1.lua': 'return 1\n--- @include grant\n' });
    expect(() => resolveLuaIncludes(dir, 'bad-1.lua')).toThrow(
      'Lua script bad-1.lua line 2: malformed include "--- @include grant"; expected --- @include "<path>"',
    );
  });

  it('names a script by its command and a digest of its resolved text, so any change of the text renames it', () => {
    write({ 'lock-2.lua': '--- @include "part"\nreturn 1\n', 'part.lua': 'local x = 1\n' });
    const before = loadLockScript('lock-2.lua', dir);
    expect(before).toMatchObject({
      name: `distributedLock_lock_${textDigest('2', 'local x = 1\nreturn 1\n')}`,
      numberOfKeys: 2,
    });
    write({ 'part.lua': 'local x = 2\n' });
    const after = loadLockScript('lock-2.lua', dir);
    expect(after.name).not.toBe(before.name);
    expect(after.name).toMatch(/^distributedLock_lock_[0-9a-f]{12}$/);
  });
});

describe('the lock scripts', () => {
  const files = readdirSync(SCRIPTS, { recursive: true, encoding: 'utf8' }).filter((file) => file.endsWith('.lua'));

  it('each open with a header; the scripts name their keys, arguments and output', () => {
    expect(files.length).toBeGreaterThanOrEqual(3);
    for (const file of files) {
      const text = readFileSync(join(SCRIPTS, file), 'utf8');
      expect(text.startsWith('--[[')).toBe(true);
      if (!file.startsWith('includes')) expect(text).toMatch(/Input:\n\s+KEYS\[1\][\s\S]*ARGV\[1\][\s\S]*Output:/);
    }
  });

  it('resolve with every include replaced; the number of keys comes from the file name', () => {
    const scripts = lockScripts();
    expect([scripts.acquire.numberOfKeys, scripts.extend.numberOfKeys, scripts.release.numberOfKeys]).toEqual([
      7, 3, 7,
    ]);
    for (const script of Object.values(scripts)) expect(script.lua).not.toContain('@include');
    expect(new Set(Object.values(scripts).map((s) => s.name)).size).toBe(3);
  });
});
