import type { LockBackend, LockBackendCapabilities } from '../backends/lock-backend';

/**
 * The matchers the kit asserts with: a subset that jest's and vitest's `expect` both have, so that
 * either runner's `expect` can be passed in (and its failures read as the runner's own).
 */
export interface ConformanceMatchers<R> {
  toBe(expected: unknown): R;
  toEqual(expected: unknown): R;
  toBeNull(): R;
  toBeUndefined(): R;
  toBeInstanceOf(expected: unknown): R;
  toMatchObject(expected: object): R;
  toHaveLength(length: number): R;
  toBeGreaterThan(expected: number | bigint): R;
  toBeGreaterThanOrEqual(expected: number | bigint): R;
  toBeLessThanOrEqual(expected: number | bigint): R;
  toContain(expected: unknown): R;
}

export interface ConformanceAssertion extends ConformanceMatchers<unknown> {
  not: ConformanceMatchers<unknown>;
  resolves: ConformanceMatchers<PromiseLike<unknown>>;
  rejects: ConformanceMatchers<PromiseLike<unknown>>;
}

export interface ConformanceExpect {
  (actual: unknown): ConformanceAssertion;
  stringMatching(pattern: RegExp): unknown;
}

/**
 * The test runner's functions, passed in so the kit runs under jest, vitest or any runner with the
 * same shape: `{ describe, it, expect, beforeEach, afterEach, afterAll }`, the runner's globals or
 * its imports (`from 'vitest'`, `from '@jest/globals'`). Every case and hook is given its timeout,
 * so the runner's default timeout does not matter.
 */
export interface ConformanceTestApi {
  describe(name: string, body: () => void): void;
  it(name: string, body: () => Promise<unknown>, timeout?: number): void;
  expect: ConformanceExpect;
  beforeEach(body: () => Promise<unknown>, timeout?: number): void;
  afterEach(body: () => Promise<unknown>, timeout?: number): void;
  afterAll(body: () => Promise<unknown>, timeout?: number): void;
}

/** What a backend stores for one key right now: the live lease's token and the live queue places. */
export interface LockStateView {
  holder: string | null;
  queued: string[];
  /**
   * Every live holder: the exclusive one, or the shared and limited ones (rule 7). Left out, as by a
   * target of a backend without modes: `holder` alone.
   */
  holders?: string[];
}

/** The backend under test, as the kit makes it and looks at it. */
export interface ConformanceTarget {
  /** Names the suites: `LockBackend contract: <name>`. */
  name: string;
  /** A fresh backend (a new client of the same store each time); the kit closes each one it made. */
  create(): LockBackend | Promise<LockBackend>;
  /**
   * What the suites are run for: the capabilities the backend declares (the first case checks that
   * it declares exactly these). Left out, or a flag left out: the full rule. A case that needs a
   * capability not claimed runs in its weaker form, or says "not claimed" in its name.
   */
  capabilities?: LockBackendCapabilities;
  /**
   * Removes the lease of `backendKey` from the store behind its holder's back, as an eviction, a
   * flush or a failover to a replica that never saw it would. Without it, the case that needs it
   * says "not checked" in its name.
   */
  evict?(backend: LockBackend, backendKey: string): Promise<void>;
  /**
   * Reads the stored state of `backendKey` (prefixed, as the backend sees it) on a backend `create`
   * made, for the model test's check after every step. Without it, the model test checks from
   * outside, at the end of each run: every key is free for a new caller at once.
   */
  inspect?(backend: LockBackend, backendKey: string): Promise<LockStateView>;
  /**
   * The backend's calls reach the store in the order they are made (one connection): the model
   * test's latency wrapper then keeps that order. Otherwise (a pool, an in-process backend) calls
   * overtake each other there.
   */
  ordered?: boolean;
  /**
   * The store is the backend object itself (as the memory backend's): backends from `create` share
   * nothing, so the cases about separate clients of one store say "not applicable" in their names,
   * and "another instance of the app" shares the case's backend.
   */
  inProcess?: boolean;
  /** Timeout of each case, in ms (default 30 s; the model test and the crowds take longer). */
  timeout?: number;
  /** Runs once after the suite, to drop what the backend left on the store. */
  teardown?(): Promise<void>;
}

/** Timeout of one case when the target sets none. */
export const CASE_TIMEOUT = 30_000;

/** Says the capabilities in a case name: `fifo, fencing strict`. */
export function describeCapabilities(capabilities: Required<LockBackendCapabilities>): string {
  const modes = capabilities.modes.length === 0 ? 'exclusive only' : `modes ${capabilities.modes.join(', ')}`;
  return `${capabilities.fifo ? 'fifo' : 'no fifo'}, fencing ${capabilities.fencing}, ${modes}`;
}
