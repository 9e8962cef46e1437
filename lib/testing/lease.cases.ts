import { randomBytes } from 'node:crypto';
import type * as FC from 'fast-check';
import { DistributedLockService } from '../distributed-lock.service';
import type { LockGuard } from '../distributed-lock';
import { LockBackendError } from '../lock.errors';
import type { ContractContext } from './contract-context';
import { loadFastCheck } from './fast-check.loader';
import { eventually, sleep } from './time';

/** Leases through the service: exclusivity, release, expiry, extension, fences, keys, a random model, failures. */
export function leaseCases(ctx: ContractContext): void {
  const { expect } = ctx.api;
  const it = ctx.it;

  it('grants a key to exactly one of 50 concurrent tryAcquire calls', async () => {
    const locks = ctx.service();
    const guards = await Promise.all(Array.from({ length: 50 }, () => locks.tryAcquire('race')));
    const winners = guards.filter((g): g is LockGuard => g !== null);
    expect(winners).toHaveLength(1);
    expect(winners[0]).toMatchObject({ key: 'race', token: expect.stringMatching(/^[0-9a-f]{32}$/) });
    expect(typeof winners[0].fence).toBe('bigint');
    expect(winners[0].expiresAt).toBeGreaterThan(winners[0].acquiredAt - 10_000);
    expect(winners[0].expiresAt).toBeLessThanOrEqual(winners[0].acquiredAt + 10_000);
  });

  it('keeps different keys independent', async () => {
    const locks = ctx.service();
    const a = await locks.tryAcquire('a');
    const b = await locks.tryAcquire('b');
    expect(a).not.toBeNull();
    expect(b).not.toBeNull();
  });

  it('releases idempotently and frees the key for the next holder', async () => {
    const locks = ctx.service();
    const guard = (await locks.tryAcquire('idem'))!;
    expect(await locks.tryAcquire('idem')).toBeNull();
    await locks.release(guard);
    await locks.release(guard);
    const next = await locks.tryAcquire('idem');
    expect(next).not.toBeNull();
    await locks.release(guard);
    expect(await locks.tryAcquire('idem')).toBeNull();
  });

  it('lets a lease expire after its TTL and never lets a stale guard touch the next holder', async () => {
    const locks = ctx.service();
    // Short enough to end soon, long enough to be found held by the next call on a slow machine.
    const stale = (await locks.tryAcquire('ttl', { ttl: 1_000 }))!;
    expect(await locks.tryAcquire('ttl')).toBeNull();
    const next = await eventually(() => locks.tryAcquire('ttl', { ttl: 10_000 }), { within: 5_000 });
    expect(next.fence).toBeGreaterThan(stale.fence);

    expect(await locks.extend(stale)).toBe(false);
    await locks.release(stale);
    expect(await locks.tryAcquire('ttl')).toBeNull();
    expect(await locks.extend(next)).toBe(true);

    const forged = { ...next, token: randomBytes(16).toString('hex') };
    await locks.release(forged);
    expect(await locks.extend(forged)).toBe(false);
    expect(await locks.tryAcquire('ttl')).toBeNull();
  });

  it('extends a held lease, and refuses once it was released', async () => {
    const locks = ctx.service();
    const guard = (await locks.tryAcquire('extend', { ttl: 1_000 }))!;
    const before = guard.expiresAt;
    await sleep(20);
    expect(await locks.extend(guard, 5_000)).toBe(true);
    expect(guard.expiresAt).toBeGreaterThan(before);
    // The extension outlives the original TTL.
    await sleep(1_200);
    expect(await locks.tryAcquire('extend')).toBeNull();
    await locks.release(guard);
    expect(await locks.extend(guard)).toBe(false);
  });

  it('ends a lease sooner after an extension with a shorter TTL, for every caller', async () => {
    const locks = ctx.service();
    const other = ctx.service();
    const guard = (await locks.tryAcquire('shorten', { ttl: 10_000 }))!;
    expect(await locks.extend(guard, 200)).toBe(true);
    const next = await eventually(() => other.tryAcquire('shorten'), {
      within: 3_000,
      what: 'the shortened lease to end',
    });
    expect(next.fence).toBeGreaterThan(guard.fence);
  });

  it(`hands out strictly increasing fences across releases, expiries and holders${ctx.capabilities.fencing === 'strict' ? '' : ' of one backend'}`, async () => {
    const a = ctx.service();
    const b = ctx.service();
    const fences: bigint[] = [];
    for (let i = 0; i < 5; i++) {
      const guard = (await (i % 2 ? a : b).tryAcquire('fence'))!;
      fences.push(guard.fence);
      await (i % 2 ? a : b).release(guard);
    }
    const expiring = (await a.tryAcquire('fence', { ttl: 400 }))!;
    fences.push(expiring.fence);
    const after = await eventually(() => b.tryAcquire('fence'), { within: 5_000 });
    fences.push(after.fence);
    for (let i = 1; i < fences.length; i++) expect(fences[i]).toBeGreaterThan(fences[i - 1]);
  });

  if (ctx.capabilities.fencing === 'per-node') {
    it("not claimed (fencing 'per-node'): fences that increase across separate clients of one store", async () => {
      expect(ctx.capabilities.fencing).toBe('per-node');
    });
  } else if (ctx.target.inProcess) {
    it('not applicable (an in-process store): fences across separate clients of one store', async () => {
      expect(ctx.target.inProcess).toBe(true);
    });
  } else {
    it('hands out strictly increasing fences across separate clients of one store, as separate processes would', async () => {
      const other = await ctx.target.create();
      try {
        const a = ctx.service();
        const b = new DistributedLockService({ backend: other, keyPrefix: ctx.prefix, ttl: 10_000, wait: 5_000 });
        const fences: bigint[] = [];
        for (let i = 0; i < 6; i++) {
          const locks = i % 2 ? a : b;
          const guard = (await locks.tryAcquire('fence-apart'))!;
          expect(guard).not.toBeNull();
          fences.push(guard.fence);
          await locks.release(guard);
        }
        const expiring = (await b.tryAcquire('fence-apart', { ttl: 400 }))!;
        fences.push(expiring.fence);
        const after = await eventually(() => a.tryAcquire('fence-apart'), { within: 5_000 });
        fences.push(after.fence);
        for (let i = 1; i < fences.length; i++) expect(fences[i]).toBeGreaterThan(fences[i - 1]);
        await a.release(after);
      } finally {
        await other.close();
      }
    });
  }

  it('keeps keys with CR/LF, emoji and 1024 bytes apart from their neighbours', async () => {
    const locks = ctx.service();
    const keys = [
      'line\r\nbreak',
      'line\nbreak',
      'emoji 🔒',
      'emoji 🔓',
      'x'.repeat(1024),
      `${'x'.repeat(1023)}y`,
      '{tag}',
      '{tag}x',
    ];
    const guards = await Promise.all(keys.map((key) => locks.tryAcquire(key)));
    guards.forEach((guard, i) => expect(guard?.key).toBe(keys[i]));
    for (const key of keys) expect(await locks.tryAcquire(key)).toBeNull();
    await Promise.all(guards.map((guard) => locks.release(guard!)));
    for (const key of keys) expect(await locks.tryAcquire(key)).not.toBeNull();
  });

  it('agrees with a simple model over random operation sequences', async () => {
    const fc = loadFastCheck();
    type Model = { holder: Map<string, number>; fence: Map<string, bigint> };
    type Real = { locks: DistributedLockService[]; guards: Map<string, LockGuard> };
    const keys = ['p', 'q'];
    const actors = [0, 1, 2];
    const slot = (actor: number, key: string): string => `${actor}/${key}`;

    class TryAcquire implements FC.AsyncCommand<Model, Real> {
      constructor(
        readonly actor: number,
        readonly key: string,
      ) {}
      check = (): boolean => true;
      async run(m: Model, r: Real): Promise<void> {
        const guard = await r.locks[this.actor].tryAcquire(this.key);
        if (m.holder.has(this.key)) {
          expect(guard).toBeNull();
          return;
        }
        expect(guard).not.toBeNull();
        expect(guard!.fence).toBeGreaterThan(m.fence.get(this.key) ?? -1n);
        m.holder.set(this.key, this.actor);
        m.fence.set(this.key, guard!.fence);
        r.guards.set(slot(this.actor, this.key), guard!);
      }
      toString = (): string => `tryAcquire(${this.actor}, ${this.key})`;
    }
    class Release implements FC.AsyncCommand<Model, Real> {
      constructor(
        readonly actor: number,
        readonly key: string,
      ) {}
      check = (): boolean => true;
      async run(m: Model, r: Real): Promise<void> {
        const guard = r.guards.get(slot(this.actor, this.key));
        if (!guard) return;
        await r.locks[this.actor].release(guard);
        r.guards.delete(slot(this.actor, this.key));
        if (m.holder.get(this.key) === this.actor && m.fence.get(this.key) === guard.fence) m.holder.delete(this.key);
      }
      toString = (): string => `release(${this.actor}, ${this.key})`;
    }
    class Extend implements FC.AsyncCommand<Model, Real> {
      constructor(
        readonly actor: number,
        readonly key: string,
      ) {}
      check = (): boolean => true;
      async run(m: Model, r: Real): Promise<void> {
        const guard = r.guards.get(slot(this.actor, this.key));
        if (!guard) return;
        const held = m.holder.get(this.key) === this.actor && m.fence.get(this.key) === guard.fence;
        expect(await r.locks[this.actor].extend(guard)).toBe(held);
      }
      toString = (): string => `extend(${this.actor}, ${this.key})`;
    }
    const command = (C: new (actor: number, key: string) => FC.AsyncCommand<Model, Real>) =>
      fc.tuple(fc.constantFrom(...actors), fc.constantFrom(...keys)).map(([actor, key]) => new C(actor, key));

    await fc.assert(
      fc.asyncProperty(
        fc.commands([command(TryAcquire), command(Release), command(Extend)], { maxCommands: 25 }),
        async (commands) => {
          ctx.prefix = `contract:${randomBytes(6).toString('hex')}:`;
          const real: Real = { locks: actors.map(() => ctx.service({ ttl: 60_000 })), guards: new Map() };
          await fc.asyncModelRun(() => ({ model: { holder: new Map(), fence: new Map() }, real }), commands);
          await Promise.all([...real.guards].map(([s, g]) => real.locks[Number(s.split('/')[0])].release(g)));
        },
      ),
      { numRuns: 25 },
    );
  });

  it('reports a failing backend as LockBackendError, never as busy', async () => {
    const locks = ctx.service();
    ctx.backend.fail.add('tryAcquire');
    const error = await locks.tryAcquire('down').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockBackendError);
    expect((error as LockBackendError).cause).toBeInstanceOf(Error);
    await expect(locks.acquire('down', { wait: 1_000 })).rejects.toBeInstanceOf(LockBackendError);
  });
}
