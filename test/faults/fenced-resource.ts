import type { Redis } from 'ioredis';
import type { Pool } from 'pg';

/**
 * The shared resource the fault workers update: a counter that checks fences itself, as the README
 * tells users to do. A read presents the reader's fence and raises the resource's `seen` mark; a
 * write is accepted only when its fence is greater than the last accepted write's and not below
 * `seen` (so a former holder cannot write after a newer holder read). With `fenceCheck: false` it
 * accepts everything: the demonstration of what a TTL lock alone allows.
 */
export interface FencedResource {
  /** Creates (or resets) the counter `name` to 0. */
  reset(name: string): Promise<void>;
  read(name: string, fence: bigint): Promise<{ value: number; ok: boolean }>;
  write(name: string, fence: bigint, value: number): Promise<boolean>;
  value(name: string): Promise<number>;
  close(): Promise<void>;
}

/** A PostgreSQL row per counter, checked by `WHERE`. */
export class PostgresFencedResource implements FencedResource {
  constructor(
    private readonly pool: Pool,
    private readonly table: string,
    private readonly fenceCheck: boolean,
  ) {}

  static async create(pool: Pool, schema: string, fenceCheck: boolean): Promise<PostgresFencedResource> {
    const table = `"${schema}"."fenced_counter"`;
    await pool.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    await pool.query(
      `CREATE TABLE IF NOT EXISTS ${table} (name text PRIMARY KEY, value bigint NOT NULL, fence numeric NOT NULL, seen numeric NOT NULL)`,
    );
    return new PostgresFencedResource(pool, table, fenceCheck);
  }

  async reset(name: string): Promise<void> {
    await this.pool.query(
      `INSERT INTO ${this.table} (name, value, fence, seen) VALUES ($1, 0, -1, -1)
       ON CONFLICT (name) DO UPDATE SET value = 0, fence = -1, seen = -1`,
      [name],
    );
  }

  async read(name: string, fence: bigint): Promise<{ value: number; ok: boolean }> {
    const { rows } = await this.pool.query<{ value: string; ok: boolean }>(
      `UPDATE ${this.table} SET seen = GREATEST(seen, $2::numeric) WHERE name = $1
       RETURNING value, (NOT $3::boolean OR seen = $2::numeric) AS ok`,
      [name, fence.toString(), this.fenceCheck],
    );
    return { value: Number(rows[0].value), ok: rows[0].ok };
  }

  async write(name: string, fence: bigint, value: number): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `UPDATE ${this.table} SET value = $2, fence = $3::numeric
       WHERE name = $1 AND (NOT $4::boolean OR (fence < $3::numeric AND seen <= $3::numeric))`,
      [name, value, fence.toString(), this.fenceCheck],
    );
    return rowCount === 1;
  }

  async value(name: string): Promise<number> {
    const { rows } = await this.pool.query<{ value: string }>(`SELECT value FROM ${this.table} WHERE name = $1`, [
      name,
    ]);
    return Number(rows[0].value);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** Compares two non-negative decimal strings (fences can exceed 2^53, Lua numbers cannot hold them). */
const LUA_COMPARE = `
local function cmp(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  if a == b then return 0 end
  return a < b and -1 or 1
end`;

/**
 * A Redis hash per counter, checked by a Lua compare.
 * KEYS[1] the counter; ARGV[1] fence; ARGV[2] '1' to check fences. Returns { value, ok }.
 */
const READ_SCRIPT = `${LUA_COMPARE}
local seen = redis.call('HGET', KEYS[1], 'seen') or ''
if seen == '' or cmp(seen, ARGV[1]) < 0 then redis.call('HSET', KEYS[1], 'seen', ARGV[1]); seen = ARGV[1] end
local value = redis.call('HGET', KEYS[1], 'value') or '0'
local ok = (ARGV[2] ~= '1' or seen == ARGV[1]) and 1 or 0
return { value, ok }`;

/** KEYS[1] the counter; ARGV[1] fence; ARGV[2] value; ARGV[3] '1' to check fences. Returns 1 if accepted. */
const WRITE_SCRIPT = `${LUA_COMPARE}
if ARGV[3] == '1' then
  local fence = redis.call('HGET', KEYS[1], 'fence') or ''
  local seen = redis.call('HGET', KEYS[1], 'seen') or ''
  if fence ~= '' and cmp(fence, ARGV[1]) >= 0 then return 0 end
  if seen ~= '' and cmp(seen, ARGV[1]) > 0 then return 0 end
end
redis.call('HSET', KEYS[1], 'value', ARGV[2], 'fence', ARGV[1])
return 1`;

export class RedisFencedResource implements FencedResource {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly fenceCheck: boolean,
  ) {}

  async reset(name: string): Promise<void> {
    await this.redis.del(this.prefix + name);
    await this.redis.hset(this.prefix + name, 'value', '0');
  }

  async read(name: string, fence: bigint): Promise<{ value: number; ok: boolean }> {
    const [value, ok] = (await this.redis.eval(
      READ_SCRIPT,
      1,
      this.prefix + name,
      fence.toString(),
      this.fenceCheck ? '1' : '0',
    )) as [string, number];
    return { value: Number(value), ok: ok === 1 };
  }

  async write(name: string, fence: bigint, value: number): Promise<boolean> {
    const accepted = await this.redis.eval(
      WRITE_SCRIPT,
      1,
      this.prefix + name,
      fence.toString(),
      String(value),
      this.fenceCheck ? '1' : '0',
    );
    return accepted === 1;
  }

  async value(name: string): Promise<number> {
    return Number((await this.redis.hget(this.prefix + name, 'value')) ?? '0');
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}
