import { randomFillSync } from 'node:crypto';

const TOKEN_BYTES = 16;
const POOL_TOKENS = 4096;
const pool = Buffer.alloc(TOKEN_BYTES * POOL_TOKENS);
let offset = pool.length;

/**
 * A new holder token: 128 bits from the operating system's CSPRNG, as 32 lowercase hex digits.
 * Bytes are drawn 64 KiB at a time (one system call per 4096 tokens); each byte is used once.
 */
export function newLockToken(): string {
  if (offset >= pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const token = pool.toString('hex', offset, offset + TOKEN_BYTES);
  offset += TOKEN_BYTES;
  return token;
}
