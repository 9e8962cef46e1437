import { randomBytes } from 'node:crypto';
import type * as FastCheck from 'fast-check';
import {
  capabilitiesOf,
  type AcquireResult,
  type HandOff,
  type HeldWith,
  type LeaseMode,
  type LockBackend,
} from '../backends/lock-backend';
import { releaseOn } from '../backends/lock-backend';
import { CASE_TIMEOUT, type ConformanceTarget, type ConformanceTestApi } from './conformance-target';
import { loadFastCheck } from './fast-check.loader';

/**
 * Rule 7 of the SPI against a model, for the modes the target claims: random sequences of
 * attempts (queued or not), releases and extensions by eight tokens of fixed modes on one key,
 * each answer compared with what the model says (granted, busy, or busy because of a limit
 * conflict; released or not; whom a release handed the key to, when the backend says), and after
 * every step every token's `extend` compared with whether the model says it holds. Leases and
 * queue places are long (nothing ends by time here: the kit's cases cover expiry), so the model
 * is exact. Fences must increase with every grant, and a renewal returns the grant's fence.
 */
export function describeLeaseModesProperty(api: ConformanceTestApi, target: ConformanceTarget): void {
  const modes = capabilitiesOf(target).modes;
  if (modes.length === 0) return;
  api.describe(`lease modes against a model: ${target.name}`, () => {
    // One property per primitive, each with few tokens, so that crowded states (a writer queued
    // behind readers, readers behind a writer, a full limit with waiters) come up in most runs.
    if (modes.includes('shared')) {
      modelProperty(api, target, 'read-write locks: two exclusive tokens, three shared', [
        undefined,
        undefined,
        SHARED,
        SHARED,
        SHARED,
      ]);
    }
    if (modes.includes('limit')) {
      modelProperty(api, target, 'limited locks: three tokens of limit 2, one of limit 3, one exclusive', [
        LIMIT_2,
        LIMIT_2,
        LIMIT_2,
        LIMIT_3,
        undefined,
      ]);
    }
  });
}

function modelProperty(
  api: ConformanceTestApi,
  target: ConformanceTarget,
  what: string,
  tokenModes: ReadonlyArray<LeaseMode | undefined>,
): void {
  api.it(
    `keeps rule 7 for ${what}: every answer as the model's, under random attempts, releases and extensions`,
    async () => {
      const fc = loadFastCheck();
      await fc.assert(
        fc.asyncProperty(steps(fc, tokenModes.length), async (list) => {
          const backend = await target.create();
          const key = `modes:${randomBytes(5).toString('hex')}`;
          const tokens = tokenModes.map(() => randomBytes(16).toString('hex'));
          const run = new ModelRun(api, backend, key, tokens, tokenModes);
          try {
            for (const step of list) await run.apply(step);
          } finally {
            for (const token of tokens) await releaseOn(backend, key, token).catch(() => undefined);
            await backend.close();
          }
        }),
        {
          numRuns: Number(process.env.LOCK_MODEL_RUNS ?? 60),
          interruptAfterTimeLimit: 60_000,
          markInterruptAsFailure: false,
        },
      );
    },
    Math.max(target.timeout ?? CASE_TIMEOUT, 90_000),
  );
}

const SHARED: LeaseMode = { kind: 'shared' };
const LIMIT_2: LeaseMode = { kind: 'limit', limit: 2 };
const LIMIT_3: LeaseMode = { kind: 'limit', limit: 3 };
const TTL = 60_000;

type Step =
  { op: 'acquire'; who: number; queued: boolean } | { op: 'release'; who: number } | { op: 'extend'; who: number };

function steps(fc: typeof FastCheck, tokens: number): FastCheck.Arbitrary<Step[]> {
  const who = fc.nat(tokens - 1);
  return fc.array(
    fc.oneof(
      { weight: 6, arbitrary: fc.record({ op: fc.constant('acquire' as const), who, queued: fc.boolean() }) },
      { weight: 2, arbitrary: fc.record({ op: fc.constant('release' as const), who }) },
      { weight: 1, arbitrary: fc.record({ op: fc.constant('extend' as const), who }) },
    ),
    { minLength: 10, maxLength: 40, size: 'max' },
  );
}

/** The model of one key: its holders, how they share it, and its queue. */
class KeyModel {
  exclusive: number | undefined;
  readonly holders = new Set<number>();
  sharing: HeldWith | undefined;
  queue: number[] = [];

  constructor(private readonly modes: ReadonlyArray<LeaseMode | undefined>) {}

  holds(who: number): boolean {
    return this.exclusive === who || this.holders.has(who);
  }

  /** granted / busy / a conflict, as the backend must answer `who`'s attempt; applies it. */
  acquire(who: number, queued: boolean): { granted: boolean; heldWith?: HeldWith } {
    const mode = this.modes[who];
    if (this.holds(who)) {
      this.leave(who);
      return { granted: true };
    }
    const conflict = this.conflict(mode);
    if (conflict) return { granted: false, heldWith: conflict };
    const place = this.queue.indexOf(who);
    const aheadOfIt = place === -1 ? this.queue.length > 0 : place > 0;
    if (this.fits(mode) && !aheadOfIt) {
      this.grant(who);
      this.leave(who);
      return { granted: true };
    }
    if (queued && !this.queue.includes(who)) this.queue.push(who);
    return { granted: false };
  }

  /**
   * Ends `who`'s lease and place; returns whether it held, and whom the key went to: a waiter that
   * leaves can be what held back those behind it (a writer queued ahead of readers).
   */
  release(who: number): { released: boolean; handed: number[] } {
    this.leave(who);
    const released = this.holds(who);
    if (this.exclusive === who) this.exclusive = undefined;
    else if (this.holders.delete(who) && this.holders.size === 0) this.sharing = undefined;
    const handed: number[] = [];
    while (this.queue.length > 0 && this.fits(this.modes[this.queue[0]])) {
      const next = this.queue.shift()!;
      this.grant(next);
      handed.push(next);
      if (!this.modes[next]) break;
    }
    return { released, handed };
  }

  private leave(who: number): void {
    this.queue = this.queue.filter((other) => other !== who);
  }

  private grant(who: number): void {
    const mode = this.modes[who];
    if (!mode) this.exclusive = who;
    else {
      this.holders.add(who);
      this.sharing = mode.kind === 'shared' ? 'shared' : `limit:${mode.limit}`;
    }
  }

  private fits(mode: LeaseMode | undefined): boolean {
    if (this.exclusive !== undefined) return false;
    if (this.holders.size === 0) return true;
    if (!mode) return false;
    if (mode.kind === 'shared') return this.sharing === 'shared';
    return this.sharing === `limit:${mode.limit}` && this.holders.size < mode.limit;
  }

  private conflict(mode: LeaseMode | undefined): HeldWith | undefined {
    const wanted: HeldWith | undefined = mode?.kind === 'limit' ? `limit:${mode.limit}` : undefined;
    if (this.exclusive !== undefined) return wanted === undefined ? undefined : 'exclusive';
    if (this.sharing === undefined || this.sharing === wanted) return undefined;
    if (wanted !== undefined || this.sharing !== 'shared') return this.sharing;
    return undefined;
  }
}

/** One run: the backend, the model, and the fences seen. */
class ModelRun {
  private readonly model: KeyModel;
  private lastFence = 0n;
  private readonly fences = new Map<number, bigint>();
  private readonly trail: string[] = [];

  constructor(
    private readonly api: ConformanceTestApi,
    private readonly backend: LockBackend,
    private readonly key: string,
    private readonly tokens: readonly string[],
    private readonly modes: ReadonlyArray<LeaseMode | undefined>,
  ) {
    this.model = new KeyModel(modes);
  }

  async apply(step: Step): Promise<void> {
    const { expect } = this.api;
    const { who } = step;
    const token = this.tokens[who];
    const name = `${step.op} #${who} (${describe(this.modes[who])}${step.op === 'acquire' && step.queued ? ', queued' : ''})`;
    this.trail.push(name);
    const where = this.trail.join(' → ');
    if (step.op === 'acquire') {
      const held = this.model.holds(who);
      const expected = this.model.acquire(who, step.queued);
      const result: AcquireResult = await this.backend.tryAcquire(
        this.key,
        token,
        TTL,
        step.queued ? { lease: TTL } : undefined,
        this.modes[who],
      );
      expect({ where, granted: result.fence !== null }).toEqual({ where, granted: expected.granted });
      if (result.fence === null) {
        expect({ where, heldWith: result.heldWith }).toEqual({ where, heldWith: expected.heldWith });
      } else if (!held) {
        this.granted(who, result.fence, where);
      } else if (this.fences.has(who)) {
        // A renewal: the lease keeps the fence it was granted with.
        expect({ where, fence: result.fence }).toEqual({ where, fence: this.fences.get(who) });
      } else {
        // Handed over by a release that did not say so: its fence is seen for the first time.
        this.fences.set(who, result.fence);
      }
    } else if (step.op === 'release') {
      const expected = this.model.release(who);
      const result = await releaseOn(this.backend, this.key, token);
      this.fences.delete(who);
      expect({ where, released: result.released }).toEqual({ where, released: expected.released });
      if (result.handedTo) {
        const handed: HandOff[] = [result.handedTo, ...(result.alsoHandedTo ?? [])];
        const tokens = handed.map((handOff) => this.tokens.indexOf(handOff.token));
        expect({ where, handed: tokens }).toEqual({ where, handed: expected.handed });
        handed.forEach((handOff, i) => this.granted(tokens[i], handOff.fence, where));
      } else if (this.backend.releaseWithHandOff && result.released) {
        // A release that ended a lease says whom it handed the key to. One that ended none (a waiter
        // leaving) may hand it on without saying so: the holders are checked below either way.
        expect({ where, handed: [] }).toEqual({ where, handed: expected.handed });
      }
    } else {
      const extended = await this.backend.extend(this.key, token, TTL);
      expect({ where, extended }).toEqual({ where, extended: this.model.holds(who) });
    }
    // Every token holds exactly when the model says so (extend renews, and changes nothing else).
    for (let i = 0; i < this.tokens.length; i++) {
      const holds = await this.backend.extend(this.key, this.tokens[i], TTL);
      expect({ where, token: i, holds }).toEqual({ where, token: i, holds: this.model.holds(i) });
    }
  }

  private granted(who: number, fence: bigint, where: string): void {
    this.api.expect({ where, fenceAboveEveryEarlier: fence > this.lastFence }).toEqual({
      where,
      fenceAboveEveryEarlier: true,
    });
    this.lastFence = fence;
    this.fences.set(who, fence);
  }
}

function describe(mode: LeaseMode | undefined): string {
  if (!mode) return 'exclusive';
  return mode.kind === 'shared' ? 'shared' : `limit ${mode.limit}`;
}
