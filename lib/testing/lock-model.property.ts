import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import type * as FC from 'fast-check';
import { capabilitiesOf, type LeaseModeKind, type LockBackend } from '../backends/lock-backend';
import type { LockGuard, MultiLockGuard } from '../distributed-lock';
import { DistributedLockService } from '../distributed-lock.service';
import { LockBackendError, LockTimeoutError } from '../lock.errors';
import { CASE_TIMEOUT, type ConformanceTarget, type ConformanceTestApi } from './conformance-target';
import { loadFastCheck } from './fast-check.loader';
import { LatencyBackend } from './latency-backend';
import { sleep } from './time';
import { seededRandom } from './seeded-random';

/**
 * One acquire made by a command, of one key or of both (a multi-key lock): its tokens (one per key,
 * each bound when its first attempt reaches the backend) and where it stands.
 */
interface Attempt {
  actor: number;
  keys: readonly string[];
  tokens: string[];
  controller: AbortController;
  state: 'pending' | 'held' | 'gave-up' | 'released';
  guard?: LockGuard | MultiLockGuard;
  /** How it ended when it gave up: timeout, abort, or an unexpected error (which fails the run). */
  ending?: string;
  settled: Promise<void>;
}

interface Real {
  backend: LatencyBackend;
  inner: LockBackend;
  locks: DistributedLockService[];
  prefix: string;
  attempts: Attempt[];
  /** Errors other than a timeout or the caller's own abort: none is expected. */
  unexpected: string[];
}

type Model = Record<string, never>;

/** 'a' and 'b' are taken exclusive or shared; 'c' only with limit 2 (a limit never meets another mode). */
const KEYS = ['a', 'b', 'c'];
const ACTORS = [0, 1, 2];
/** The attempt a backend call is made for (the service calls the backend inside the caller's async context). */
const making = new AsyncLocalStorage<Attempt>();
const GAVE_UP = new Error('the caller gave up');

/**
 * Model test with the real scheduler: fast-check commands interleave acquire (of one key, or of both
 * as a multi-key lock, exclusive, shared or limited as the target claims, with a wait and a signal), abort, deadline expiry, release, extend with other TTLs, the passing of time, and
 * backend latency (every call delayed at random on its way in and out, so calls overtake each
 * other), on a real backend. After every step, once no call of a token that gave up is still under
 * way, the backend's own state must show: no key held by a token whose acquire gave up (timed out,
 * aborted) or that was released, and queue places only for waiters still waiting. A multi-key
 * acquire that gave up holds neither key: the key it took before it gave up is given back too.
 */
export function describeLockModelProperty(api: ConformanceTestApi, target: ConformanceTarget): void {
  const { describe, expect } = api;
  const inspect = target.inspect?.bind(target);
  const modes = capabilitiesOf(target).modes;
  const what = inspect
    ? 'never leaves a key or a queue place to a token that gave up, whatever the timing'
    : 'never leaves a key to a token that gave up, whatever the timing (checked from outside, the target has no inspect: every key is free at the end of each run)';

  describe(`lock model with the real scheduler: ${target.name}`, () => {
    if (target.teardown) api.afterAll(() => target.teardown!(), target.timeout ?? CASE_TIMEOUT);

    api.it(
      what,
      async () => {
        const fc = loadFastCheck();
        await fc.assert(
          fc.asyncProperty(
            commands(fc),
            fc.integer({ min: 1, max: 2 ** 30 }),
            fc.constantFrom(0, 5, 20, 40),
            async (cmds, seed, latency) => {
              const inner = await target.create();
              const backend = new LatencyBackend(inner, seededRandom(seed), (token) => {
                const attempt = making.getStore();
                if (attempt && !attempt.tokens.includes(token)) attempt.tokens.push(token);
              });
              backend.maxDelay = latency;
              backend.reorder = target.ordered !== true;
              const prefix = `model:${randomBytes(5).toString('hex')}:`;
              const real: Real = {
                backend,
                inner,
                prefix,
                attempts: [],
                unexpected: [],
                locks: ACTORS.map(
                  () => new DistributedLockService({ backend, keyPrefix: prefix, ttl: 10_000, wait: 1_000 }),
                ),
              };
              try {
                await fc.asyncModelRun(() => ({ model: {}, real }), cmds);
                await finish(real);
              } finally {
                for (const attempt of real.attempts) attempt.controller.abort(GAVE_UP);
                await Promise.all(real.attempts.map((a) => a.settled));
                backend.maxDelay = 0;
                await Promise.all(
                  real.attempts
                    .filter((a) => a.state === 'held')
                    .map((a) => release(real.locks[a.actor], a.guard!).catch(() => undefined)),
                );
                await quiesce(real, new Set(real.backend.tokens));
                await inner.close();
              }
            },
          ),
          // Bounded for `npm test`; LOCK_MODEL_RUNS raises the count for a longer local search.
          {
            numRuns: Number(process.env.LOCK_MODEL_RUNS ?? 40),
            interruptAfterTimeLimit: Number(process.env.LOCK_MODEL_RUNS ?? 0) > 40 ? 600_000 : 20_000,
            markInterruptAsFailure: false,
            // A failure prints its seed and path: LOCK_MODEL_REPLAY='{"seed":…,"path":"…"}' replays it.
            ...(process.env.LOCK_MODEL_REPLAY
              ? (JSON.parse(process.env.LOCK_MODEL_REPLAY) as { seed: number; path: string })
              : {}),
          },
        );
      },
      Math.max(target.timeout ?? 0, Number(process.env.LOCK_MODEL_RUNS ?? 0) > 40 ? 700_000 : 90_000),
    );
  });

  /**
   * After every command: let callbacks run, take the tokens that have given up by now, wait until
   * none of their calls is under way (bounded), then look at the backend. Tokens that give up while
   * it looks are left to the next step.
   */
  async function step(real: Real): Promise<void> {
    await sleep(0);
    const gaveUp = tokensThatGaveUp(real);
    await quiesce(real, gaveUp);
    for (const key of inspect ? KEYS : []) {
      const view = await inspect!(real.inner, real.prefix + key);
      for (const holder of view.holders ?? (view.holder === null ? [] : [view.holder])) {
        if (gaveUp.has(holder)) throw new Error(`"${key}" is held by token ${holder}, whose ${story(real, holder)}`);
      }
      for (const token of view.queued) {
        if (gaveUp.has(token))
          throw new Error(`"${key}" has a live queue place for token ${token}, whose ${story(real, token)}`);
      }
    }
    expect(real.unexpected).toEqual([]);
  }

  /** At the end: everyone gives up or releases; nothing may stay held or queued. */
  async function finish(real: Real): Promise<void> {
    for (const attempt of real.attempts) attempt.controller.abort(GAVE_UP);
    await Promise.all(real.attempts.map((a) => a.settled));
    for (const attempt of real.attempts.filter((a) => a.state === 'held')) {
      await release(real.locks[attempt.actor], attempt.guard!);
      attempt.state = 'released';
    }
    await step(real);
    for (const key of KEYS) {
      if (inspect) {
        const view = await inspect(real.inner, real.prefix + key);
        expect({ key, holder: view.holder, queued: view.queued }).toEqual({ key, holder: null, queued: [] });
      }
      // From outside: a new caller takes each key at once (a key left to a token that gave up would
      // stay taken for that token's TTL).
      const fresh = randomBytes(16).toString('hex');
      const result = await real.inner.tryAcquire(real.prefix + key, fresh, 1_000);
      expect({ key, free: result.fence !== null }).toEqual({ key, free: true });
      await real.inner.release(real.prefix + key, fresh);
    }
  }

  function commands(fc: typeof FC): FC.Arbitrary<Iterable<FC.AsyncCommand<Model, Real>>> {
    const actor = fc.constantFrom(...ACTORS);
    const key = fc.constantFrom(...KEYS);
    // One key, or both in either order (a multi-key lock takes them sorted whatever the order).
    const keys = fc.constantFrom<readonly string[]>(['a'], ['b'], ['a', 'b'], ['b', 'a'], ['c']);
    const shared = fc.boolean();
    const ttl = fc.constantFrom(150, 1_000, 60_000);
    return fc.commands(
      [
        // Acquires are drawn three times as often as the rest: most interesting steps need a holder and a waiter.
        ...[0, 1, 2].map(() =>
          fc
            .record({
              actor,
              keys,
              shared,
              ttl,
              wait: fc.constantFrom(0, 20, 100, 2_000),
              abortAfter: fc.constantFrom<number | null>(null, null, 0, 1, 5, 20, 50, 100),
            })
            .map((o) => new Acquire(o.actor, o.keys, o.ttl, o.wait, o.abortAfter, modeOf(o.keys, o.shared, modes))),
        ),
        fc.nat(20).map((i) => new Abort(i)),
        fc.record({ actor, key }).map((o) => new Release(o.actor, o.key)),
        fc.record({ actor, key, ttl: fc.constantFrom(100, 5_000) }).map((o) => new Extend(o.actor, o.key, o.ttl)),
        fc.constantFrom(0, 10, 60, 200).map((ms) => new Wait(ms)),
        fc.constantFrom(0, 2, 15, 40).map((ms) => new Latency(ms)),
      ],
      { maxCommands: 20 },
    );
  }

  class Acquire implements FC.AsyncCommand<Model, Real> {
    constructor(
      readonly actor: number,
      readonly keys: readonly string[],
      readonly ttl: number,
      readonly wait: number,
      readonly abortAfter: number | null,
      readonly mode: { mode?: 'shared'; limit?: number },
    ) {}
    check = (): boolean => true;
    async run(_m: Model, real: Real): Promise<void> {
      const controller = new AbortController();
      const tokens: string[] = [];
      const attempt = { actor: this.actor, keys: this.keys, tokens, controller, state: 'pending' } as Attempt;
      real.attempts.push(attempt);
      const options = { wait: this.wait, ttl: this.ttl, signal: controller.signal, ...this.mode };
      const locks = real.locks[this.actor];
      const promise: Promise<LockGuard | MultiLockGuard> = making.run(attempt, () =>
        this.keys.length === 1 ? locks.acquire(this.keys[0], options) : locks.acquire(this.keys, options),
      );
      // Right after the call, while its first attempt is in flight.
      if (this.abortAfter === 0) controller.abort(GAVE_UP);
      else if (this.abortAfter !== null) setTimeout(() => controller.abort(GAVE_UP), this.abortAfter);
      attempt.settled = promise.then(
        (guard) => {
          attempt.guard = guard;
          for (const lock of 'locks' in guard ? guard.locks : [guard])
            if (!attempt.tokens.includes(lock.token)) attempt.tokens.push(lock.token);
          attempt.state = 'held';
        },
        (error: unknown) => {
          attempt.state = 'gave-up';
          if (error === GAVE_UP) attempt.ending = 'acquire was aborted';
          else if (error instanceof LockTimeoutError) attempt.ending = `acquire timed out (wait ${this.wait} ms)`;
          // A grant slower than its ttl (latency on a loaded machine) is given back, not returned expired.
          else if (error instanceof LockBackendError && error.message.includes('after its local deadline'))
            attempt.ending = 'its grant came back after its local deadline and was given back';
          else {
            attempt.ending = `acquire failed: ${String(error)}`;
            real.unexpected.push(`${this.toString()}: ${String(error)}`);
          }
        },
      );
      await step(real);
    }
    toString = (): string =>
      `acquire(${this.actor}, ${this.keys.join('+')}${this.mode.mode ? ', shared' : ''}${this.mode.limit ? `, limit ${this.mode.limit}` : ''}, ttl ${this.ttl}, wait ${this.wait}, abort ${this.abortAfter ?? 'never'})`;
  }

  class Abort implements FC.AsyncCommand<Model, Real> {
    constructor(readonly index: number) {}
    check = (): boolean => true;
    async run(_m: Model, real: Real): Promise<void> {
      const pending = real.attempts.filter((a) => a.state === 'pending');
      if (pending.length > 0) pending[this.index % pending.length].controller.abort(GAVE_UP);
      await step(real);
    }
    toString = (): string => `abort(#${this.index})`;
  }

  class Release implements FC.AsyncCommand<Model, Real> {
    constructor(
      readonly actor: number,
      readonly key: string,
    ) {}
    check = (): boolean => true;
    async run(_m: Model, real: Real): Promise<void> {
      const attempt = real.attempts.find(
        (a) => a.state === 'held' && a.actor === this.actor && a.keys.includes(this.key),
      );
      if (attempt) {
        await release(real.locks[this.actor], attempt.guard!);
        attempt.state = 'released';
      }
      await step(real);
    }
    toString = (): string => `release(${this.actor}, ${this.key})`;
  }

  class Extend implements FC.AsyncCommand<Model, Real> {
    constructor(
      readonly actor: number,
      readonly key: string,
      readonly ttl: number,
    ) {}
    check = (): boolean => true;
    async run(_m: Model, real: Real): Promise<void> {
      const attempt = real.attempts.find(
        (a) => a.state === 'held' && a.actor === this.actor && a.keys.includes(this.key),
      );
      if (attempt) {
        const { guard } = attempt;
        const locks = real.locks[this.actor];
        await ('locks' in guard! ? locks.extend(guard, this.ttl) : locks.extend(guard!, this.ttl));
      }
      await step(real);
    }
    toString = (): string => `extend(${this.actor}, ${this.key}, ${this.ttl})`;
  }

  /** Lets time pass: deadlines and short leases run out. */
  class Wait implements FC.AsyncCommand<Model, Real> {
    constructor(readonly ms: number) {}
    check = (): boolean => true;
    async run(_m: Model, real: Real): Promise<void> {
      await sleep(this.ms);
      await step(real);
    }
    toString = (): string => `sleep(${this.ms})`;
  }

  class Latency implements FC.AsyncCommand<Model, Real> {
    constructor(readonly ms: number) {}
    check = (): boolean => true;
    async run(_m: Model, real: Real): Promise<void> {
      real.backend.maxDelay = this.ms;
      await step(real);
    }
    toString = (): string => `latency(up to ${this.ms} ms each way)`;
  }
}

function tokensThatGaveUp(real: Real): Set<string> {
  return new Set(real.attempts.filter((a) => a.state === 'gave-up' || a.state === 'released').flatMap((a) => a.tokens));
}

/** Releases a guard of one key or a set. */
function release(locks: DistributedLockService, guard: LockGuard | MultiLockGuard): Promise<void> {
  return 'locks' in guard ? locks.release(guard) : locks.release(guard);
}

function story(real: Real, token: string): string {
  const attempt = real.attempts.find((a) => a.tokens.includes(token));
  if (!attempt) return 'acquire is unknown';
  const of = attempt.keys.length > 1 ? ` (an acquire of ${attempt.keys.join(' and ')})` : '';
  return attempt.state === 'released' ? `guard was released${of}` : `${attempt.ending ?? attempt.state}${of}`;
}

/** Waits (bounded) until no call carrying one of `tokens` is under way, twice in a row a few ms apart. */
async function quiesce(real: Real, tokens: ReadonlySet<string>): Promise<void> {
  let idle = 0;
  for (let i = 0; i < 1_000 && idle < 2; i++) {
    idle = real.backend.busyWith(tokens) ? 0 : idle + 1;
    await sleep(5);
  }
  if (idle < 2) throw new Error('calls of tokens that gave up were still under way after 5 s');
}

/**
 * The mode of an acquire, as far as the target claims it: 'c' with limit 2 (exclusive without
 * limits), the others shared when drawn so (exclusive without shared locks).
 */
function modeOf(
  keys: readonly string[],
  shared: boolean,
  modes: readonly LeaseModeKind[],
): { mode?: 'shared'; limit?: number } {
  if (keys.includes('c')) return modes.includes('limit') ? { limit: 2 } : {};
  return shared && modes.includes('shared') ? { mode: 'shared' } : {};
}
