import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import {
  DistributedLockService,
  LockBackendError,
  LockLostError,
  LockTimeoutError,
  currentLock,
  type LockBackend,
  type LockGuard,
} from '../../lib';
import { RecordingBackend, type RecordedCall } from '../support/recording-backend';
import { eventually, sleep } from '../support/time';

/** How a backend under test is made. */
export interface ContractTarget {
  /** A fresh backend; the suite closes it after each test. */
  create(): LockBackend | Promise<LockBackend>;
  /**
   * Removes the lease of `backendKey` from the server behind its holder's back, as an eviction, a
   * flush or a failover to a replica that never saw it would.
   */
  evict?(backend: LockBackend, backendKey: string): Promise<void>;
  /** Runs once after the whole suite, to drop what the backend left on the server. */
  teardown?(): Promise<void>;
}

/**
 * The contract every backend must keep, written once. Each backend's spec calls this function with
 * its own factory; when a backend fails a case, the backend is what gets fixed.
 */
export function describeLockBackendContract(name: string, target: ContractTarget): void {
  describe(`LockBackend contract: ${name}`, () => {
    let backend: RecordingBackend;
    let prefix: string;
    const services: DistributedLockService[] = [];

    /** A service on the shared backend, as another instance of the app would have. */
    function service(settings: { ttl?: number; wait?: number } = {}): DistributedLockService {
      const locks = new DistributedLockService({
        backend,
        keyPrefix: prefix,
        ttl: settings.ttl ?? 10_000,
        wait: settings.wait ?? 5_000,
      });
      services.push(locks);
      return locks;
    }

    beforeEach(async () => {
      backend = new RecordingBackend(await target.create());
      prefix = `contract:${randomBytes(6).toString('hex')}:`;
    });

    afterEach(async () => {
      services.length = 0;
      await backend.close();
    });

    if (target.teardown) afterAll(() => target.teardown!());

    it('grants a key to exactly one of 50 concurrent tryAcquire calls', async () => {
      const locks = service();
      const guards = await Promise.all(Array.from({ length: 50 }, () => locks.tryAcquire('race')));
      const winners = guards.filter((g): g is LockGuard => g !== null);
      expect(winners).toHaveLength(1);
      expect(winners[0]).toMatchObject({ key: 'race', token: expect.stringMatching(/^[0-9a-f]{32}$/) });
      expect(typeof winners[0].fence).toBe('bigint');
      expect(winners[0].expiresAt).toBeGreaterThan(winners[0].acquiredAt - 10_000);
      expect(winners[0].expiresAt).toBeLessThanOrEqual(winners[0].acquiredAt + 10_000);
    });

    it('keeps different keys independent', async () => {
      const locks = service();
      const a = await locks.tryAcquire('a');
      const b = await locks.tryAcquire('b');
      expect(a).not.toBeNull();
      expect(b).not.toBeNull();
    });

    it('releases idempotently and frees the key for the next holder', async () => {
      const locks = service();
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
      const locks = service();
      const stale = (await locks.tryAcquire('ttl', { ttl: 150 }))!;
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
      const locks = service();
      const guard = (await locks.tryAcquire('extend', { ttl: 300 }))!;
      const before = guard.expiresAt;
      await sleep(20);
      expect(await locks.extend(guard, 5_000)).toBe(true);
      expect(guard.expiresAt).toBeGreaterThan(before);
      // The extension outlives the original 300 ms.
      await sleep(500);
      expect(await locks.tryAcquire('extend')).toBeNull();
      await locks.release(guard);
      expect(await locks.extend(guard)).toBe(false);
    });

    it('hands out strictly increasing fences across releases, expiries and holders', async () => {
      const a = service();
      const b = service();
      const fences: bigint[] = [];
      for (let i = 0; i < 5; i++) {
        const guard = (await (i % 2 ? a : b).tryAcquire('fence'))!;
        fences.push(guard.fence);
        await (i % 2 ? a : b).release(guard);
      }
      const expiring = (await a.tryAcquire('fence', { ttl: 100 }))!;
      fences.push(expiring.fence);
      const after = await eventually(() => b.tryAcquire('fence'), { within: 5_000 });
      fences.push(after.fence);
      for (let i = 1; i < fences.length; i++) expect(fences[i]).toBeGreaterThan(fences[i - 1]);
    });

    it('wakes a waiting acquire by the release itself, making no calls while it waits', async () => {
      const holder = service();
      const waiter = service();
      const held = (await holder.tryAcquire('wake'))!;
      const pending = waiter.acquire('wake', { wait: 10_000 });
      const queued = await backend.whenQueued(prefix + 'wake');
      const token = queued.token!;
      const callsWhileWaiting = backend.count('tryAcquire', token);
      // Long enough for any polling loop to show itself.
      await sleep(300);
      expect(backend.count('tryAcquire', token)).toBe(callsWhileWaiting);

      await holder.release(held);
      const guard = await pending;
      expect(guard.token).toBe(token);
      expect(guard.fence).toBeGreaterThan(held.fence);
      // Woken by the release: at most one more attempt after it, none in a loop.
      expect(backend.count('tryAcquire', token)).toBeLessThanOrEqual(callsWhileWaiting + 1);
    });

    it('rejects with LockTimeoutError at the deadline and leaves nothing queued', async () => {
      const locks = service();
      const held = (await locks.tryAcquire('deadline'))!;
      const error = await locks.acquire('deadline', { wait: 150 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LockTimeoutError);
      expect(error).toMatchObject({ key: 'deadline' });
      expect((error as LockTimeoutError).waited).toBeGreaterThanOrEqual(150);
      expect((error as LockTimeoutError).message).toContain('"deadline"');

      await locks.release(held);
      // Had the timed-out waiter stayed queued, the key would now be handed to it.
      expect(await locks.acquire('deadline', { wait: 2_000 })).not.toBeNull();
    });

    it('with wait 0 makes exactly one attempt', async () => {
      const locks = service();
      await locks.tryAcquire('once');
      const before = backend.count('tryAcquire');
      await expect(locks.acquire('once', { wait: 0 })).rejects.toBeInstanceOf(LockTimeoutError);
      expect(backend.count('tryAcquire')).toBe(before + 1);
      expect(backend.count('subscribe')).toBe(0);
    });

    it('aborts a waiting acquire at once and leaves nothing held or queued', async () => {
      const locks = service();
      const held = (await locks.tryAcquire('abort'))!;
      const controller = new AbortController();
      const pending = locks.acquire('abort', { wait: 30_000, signal: controller.signal });
      await backend.whenQueued(prefix + 'abort');
      const reason = new Error('caller gave up');
      controller.abort(reason);
      await expect(pending).rejects.toBe(reason);

      await locks.release(held);
      const next = await locks.acquire('abort', { wait: 3_000, ttl: 10_000 });
      expect(next.fence).toBeGreaterThan(held.fence);

      const before = backend.calls.length;
      await expect(locks.acquire('abort', { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
      expect(backend.calls.length).toBe(before);
    });

    it('hands the key to waiters in the order they came', async () => {
      const locks = service();
      const key = 'fifo';
      const first = (await locks.tryAcquire(key))!;
      const order: number[] = [];
      const waiters: Array<Promise<void>> = [];
      for (let i = 1; i <= 5; i++) {
        waiters.push(
          locks.acquire(key, { wait: 20_000 }).then(async (guard) => {
            order.push(i);
            await sleep(5);
            await locks.release(guard);
          }),
        );
        await backend.whenQueued(prefix + key, i);
      }
      await locks.release(first);
      await Promise.all(waiters);
      expect(order).toEqual([1, 2, 3, 4, 5]);
    });

    it('keeps keys with CR/LF, emoji and 1024 bytes apart from their neighbours', async () => {
      const locks = service();
      const keys = ['line\r\nbreak', 'line\nbreak', 'emoji 🔒', 'emoji 🔓', 'x'.repeat(1024), `${'x'.repeat(1023)}y`, '{tag}', '{tag}x'];
      const guards = await Promise.all(keys.map((key) => locks.tryAcquire(key)));
      guards.forEach((guard, i) => expect(guard?.key).toBe(keys[i]));
      for (const key of keys) expect(await locks.tryAcquire(key)).toBeNull();
      await Promise.all(guards.map((guard) => locks.release(guard!)));
      for (const key of keys) expect(await locks.tryAcquire(key)).not.toBeNull();
    });

    it('agrees with a simple model over random operation sequences', async () => {
      type Model = { holder: Map<string, number>; fence: Map<string, bigint> };
      type Real = { locks: DistributedLockService[]; guards: Map<string, LockGuard> };
      const keys = ['p', 'q'];
      const actors = [0, 1, 2];
      const slot = (actor: number, key: string): string => `${actor}/${key}`;

      class TryAcquire implements fc.AsyncCommand<Model, Real> {
        constructor(readonly actor: number, readonly key: string) {}
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
      class Release implements fc.AsyncCommand<Model, Real> {
        constructor(readonly actor: number, readonly key: string) {}
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
      class Extend implements fc.AsyncCommand<Model, Real> {
        constructor(readonly actor: number, readonly key: string) {}
        check = (): boolean => true;
        async run(m: Model, r: Real): Promise<void> {
          const guard = r.guards.get(slot(this.actor, this.key));
          if (!guard) return;
          const held = m.holder.get(this.key) === this.actor && m.fence.get(this.key) === guard.fence;
          expect(await r.locks[this.actor].extend(guard)).toBe(held);
        }
        toString = (): string => `extend(${this.actor}, ${this.key})`;
      }
      const command = (C: new (actor: number, key: string) => fc.AsyncCommand<Model, Real>) =>
        fc.tuple(fc.constantFrom(...actors), fc.constantFrom(...keys)).map(([actor, key]) => new C(actor, key));

      await fc.assert(
        fc.asyncProperty(fc.commands([command(TryAcquire), command(Release), command(Extend)], { maxCommands: 25 }), async (commands) => {
          prefix = `contract:${randomBytes(6).toString('hex')}:`;
          const real: Real = { locks: actors.map(() => service({ ttl: 60_000 })), guards: new Map() };
          await fc.asyncModelRun(() => ({ model: { holder: new Map(), fence: new Map() }, real }), commands);
          await Promise.all([...real.guards].map(([s, g]) => real.locks[Number(s.split('/')[0])].release(g)));
        }),
        { numRuns: 25 },
      );
    });

    describe('withLock', () => {
      it('runs the work under the lock and releases it afterwards', async () => {
        const locks = service();
        const result = await locks.withLock('work', async (held) => {
          expect(held.key).toBe('work');
          expect(held.signal.aborted).toBe(false);
          expect(currentLock()).toBe(held);
          expect(await locks.tryAcquire('work')).toBeNull();
          return 42;
        });
        expect(result).toBe(42);
        expect(currentLock()).toBeUndefined();
        expect(await locks.tryAcquire('work')).not.toBeNull();
      });

      it('releases after the work throws, and rethrows the work’s own error', async () => {
        const locks = service();
        const boom = new Error('boom');
        await expect(locks.withLock('throws', () => Promise.reject(boom))).rejects.toBe(boom);
        expect(await locks.tryAcquire('throws')).not.toBeNull();
      });

      it('keeps extending while the work runs past the TTL', async () => {
        const locks = service();
        const other = service();
        const fenceSeen: bigint[] = [];
        await locks.withLock(
          'long',
          async (held) => {
            for (let i = 0; i < 6; i++) {
              await sleep(100);
              expect(await other.tryAcquire('long')).toBeNull();
              expect(held.signal.aborted).toBe(false);
            }
            fenceSeen.push(held.fence);
          },
          { ttl: 240 },
        );
        expect(backend.count('extend') + backend.count('extendMany')).toBeGreaterThanOrEqual(2);
        expect(await other.tryAcquire('long')).not.toBeNull();
      });

      it('aborts the signal and rejects with LockLostError when the lease is taken away', async () => {
        const locks = service();
        let reason: unknown;
        const error = await locks
          .withLock(
            'lost',
            async (held) => {
              // Another party ends the lease behind the holder's back.
              await backend.release(prefix + 'lost', held.token);
              await new Promise<void>((resolve) => held.signal.addEventListener('abort', () => resolve(), { once: true }));
              reason = held.signal.reason;
              return 'done';
            },
            { ttl: 300 },
          )
          .catch((e: unknown) => e);
        expect(reason).toBeInstanceOf(LockLostError);
        expect(error).toBeInstanceOf(LockLostError);
        expect(error).toMatchObject({ key: 'lost', workSucceeded: true });
      });

      it('is reentrant on the same key within one call chain', async () => {
        const locks = service();
        await locks.withLock('outer', async (outer) => {
          await locks.withLock('outer', async (inner) => {
            expect(inner.fence).toBe(outer.fence);
            expect(currentLock()).toBe(outer);
          });
          // The inner exit did not release.
          expect(await locks.tryAcquire('outer')).toBeNull();
          await locks.withLock('other', async (other) => {
            expect(currentLock()).toBe(other);
          });
          expect(currentLock()).toBe(outer);
        });
        expect(await locks.tryAcquire('outer')).not.toBeNull();
      });

      it('never replaces the work’s error with a release error', async () => {
        const locks = service();
        backend.fail.add('release');
        const boom = new Error('work failed');
        await expect(locks.withLock('release-fails', () => Promise.reject(boom))).rejects.toBe(boom);
        await expect(locks.withLock('release-fails-2', () => 'ok')).resolves.toBe('ok');
      });
    });

    describe('a lock is held only while its lease is confirmed', () => {
      /** A gate for RecordingBackend.gate: calls it matches wait until open() is called. */
      function gateOn(test: (call: RecordedCall) => boolean) {
        let open!: () => void;
        const opened = new Promise<void>((resolve) => (open = resolve));
        let reached!: (call: RecordedCall) => void;
        const reachedGate = new Promise<RecordedCall>((resolve) => (reached = resolve));
        let isOpen = false;
        backend.gate = (call) => {
          if (isOpen || !test(call)) return undefined;
          reached(call);
          return opened;
        };
        return {
          reached: reachedGate,
          get isOpen() {
            return isOpen;
          },
          open: () => {
            isOpen = true;
            backend.gate = undefined;
            open();
          },
        };
      }

      /** Blocks the event loop, as synchronous CPU work does. */
      function blockFor(ms: number): void {
        const until = performance.now() + ms;
        while (performance.now() < until) {
          // busy
        }
      }

      it('a callback that outlived its withLock sees no lock, and its withLock on the key waits for the next holder', async () => {
        const a = service();
        const b = service();
        let resume!: () => void;
        const later = new Promise<void>((resolve) => (resume = resolve));
        let escaped!: Promise<{ current: unknown; aborted: boolean; nested: unknown }>;
        await a.withLock('escape', (lock) => {
          // Fire and forget: not awaited by the work.
          escaped = (async () => {
            await later;
            const current = currentLock();
            const aborted = lock.signal.aborted;
            const nested = await a.withLock('escape', () => 'ran inside a stale hold', { wait: 150 }).catch((e: unknown) => e);
            return { current, aborted, nested };
          })();
        });
        const other = (await b.tryAcquire('escape'))!;
        expect(other).not.toBeNull();
        resume();
        const seen = await escaped;
        expect(seen.current).toBeUndefined();
        expect(seen.aborted).toBe(true);
        expect(seen.nested).toBeInstanceOf(LockTimeoutError);
        await b.release(other);
      });

      it('release inside withLock ends the hold: a nested withLock on the key acquires anew', async () => {
        const a = service();
        const b = service();
        const result = await a.withLock('inner-release', async (lock) => {
          await a.release(lock);
          expect(currentLock()).toBeUndefined();
          expect(lock.signal.aborted).toBe(true);
          expect(await a.extend(lock)).toBe(false);
          const other = (await b.tryAcquire('inner-release'))!;
          expect(other).not.toBeNull();
          await expect(a.withLock('inner-release', () => 'ran', { wait: 150 })).rejects.toBeInstanceOf(LockTimeoutError);
          await b.release(other);
          return a.withLock('inner-release', (again) => again.fence > lock.fence, { wait: 2_000 });
        });
        expect(result).toBe(true);
        expect(a.heldCount).toBe(0);
      });

      it('work that blocks the event loop past the TTL sees its signal aborted, and withLock rejects with LockLostError', async () => {
        const locks = service();
        const ttl = 300;
        const seen: { aborted?: boolean; current?: unknown; wrote?: boolean; nested?: unknown } = {};
        const error = await locks
          .withLock(
            'blocked',
            (lock) => {
              blockFor(ttl * 2.2);
              seen.current = currentLock();
              seen.aborted = lock.signal.aborted;
              // The write a careful holder guards, with no await after the block.
              seen.wrote = !lock.signal.aborted;
              return 'done';
            },
            { ttl },
          )
          .catch((e: unknown) => e);
        expect(seen).toEqual({ aborted: true, current: undefined, wrote: false });
        expect(error).toBeInstanceOf(LockLostError);
        expect(error).toMatchObject({ key: 'blocked', workSucceeded: true });

        // Inside a lost hold, a nested withLock on the key rejects instead of running as if it held it.
        const nested = await locks
          .withLock(
            'blocked-nested',
            async () => {
              blockFor(ttl * 2.2);
              return locks.withLock('blocked-nested', () => 'ran');
            },
            { ttl },
          )
          .catch((e: unknown) => e);
        expect(nested).toBeInstanceOf(LockLostError);
        expect(locks.heldCount).toBe(0);
      });

      it('the signal of a blocked holder is aborted when read, whatever reads it first', async () => {
        const locks = service();
        const reads: unknown[] = [];
        await locks
          .withLock(
            'blocked-reads',
            (lock) => {
              const { signal } = lock;
              blockFor(600);
              reads.push(signal.reason instanceof LockLostError);
              reads.push(signal.aborted);
              try {
                signal.throwIfAborted();
                reads.push('not thrown');
              } catch (error) {
                reads.push(error instanceof LockLostError);
              }
            },
            { ttl: 250 },
          )
          .catch(() => undefined);
        expect(reads).toEqual([true, true, true]);
      });

      it('an extend with a shorter TTL moves the watchdog: the lease stays held on the new schedule', async () => {
        const a = service();
        const b = service();
        await a.withLock(
          'shorter',
          async (lock) => {
            expect(await a.extend(lock, 300)).toBe(true);
            const extensionsBefore = backend.count('extend') + backend.count('extendMany');
            // Past the new TTL, before the old schedule's first extension (at 1 s).
            await sleep(800);
            expect(await b.tryAcquire('shorter')).toBeNull();
            expect(lock.signal.aborted).toBe(false);
            expect(lock.expiresAt).toBeGreaterThan(Date.now());
            expect(backend.count('extend') + backend.count('extendMany')).toBeGreaterThan(extensionsBefore);
            expect(await a.extend(lock, 5_000)).toBe(true);
            await sleep(400);
            expect(await b.tryAcquire('shorter')).toBeNull();
          },
          { ttl: 3_000 },
        );
        expect(await b.tryAcquire('shorter')).not.toBeNull();
      });

      // Run where the target can remove a lease behind its holder's back (every single-server backend).
      if (target.evict) {
        it('a lease that vanished from the backend during short work makes withLock reject with LockLostError', async () => {
          const a = service();
          // The other holder is another instance of the app, with a backend of its own.
          const otherBackend = await target.create();
          const b = new DistributedLockService({ backend: otherBackend, keyPrefix: prefix, ttl: 10_000, wait: 5_000 });
          let other: LockGuard | null = null;
          const error = await a
            .withLock('vanished', async () => {
              await target.evict!(backend.inner, prefix + 'vanished');
              other = await b.tryAcquire('vanished');
              return 'done';
            })
            .catch((e: unknown) => e);
          expect(other).not.toBeNull();
          expect(error).toBeInstanceOf(LockLostError);
          expect(error).toMatchObject({ key: 'vanished', workSucceeded: true });
          // The other holder's lease was not touched by the failed holder's release.
          expect(await b.extend(other!)).toBe(true);
          await b.shutdown();
        });
      }

      it('a waiter aborted while its queued attempt is in flight never receives the key', async () => {
        const holder = service();
        const waiter = service();
        const held = (await holder.tryAcquire('abort-in-flight'))!;
        const gate = gateOn((call) => call.method === 'tryAcquire' && call.queued === true);
        const controller = new AbortController();
        const pending = waiter.acquire('abort-in-flight', { wait: 20_000, signal: controller.signal });
        const attempt = await gate.reached;
        const reason = new Error('caller gave up');
        controller.abort(reason);
        await expect(pending).rejects.toBe(reason);
        // Whatever the give-back does, it must not overtake the attempt still on its way.
        await sleep(50);
        gate.open();
        await backend.whenSettled((call) => call === attempt);
        await backend.whenSettled((call) => call.method === 'release' && call.token === attempt.token);
        await holder.release(held);
        // Had the dead waiter stayed queued, the key would now be handed to it for its TTL.
        const next = await holder.tryAcquire('abort-in-flight');
        expect(next).not.toBeNull();
        expect(waiter.heldCount).toBe(0);
      });

      it('a wait whose deadline passes while an attempt is in flight rejects at the deadline and leaves nothing queued', async () => {
        const holder = service();
        const waiter = service();
        const held = (await holder.tryAcquire('deadline-in-flight'))!;
        const gate = gateOn((call) => call.method === 'tryAcquire' && call.queued === true);
        const error = await waiter.acquire('deadline-in-flight', { wait: 200 }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(LockTimeoutError);
        // Answered while the backend call was still held back.
        expect(gate.isOpen).toBe(false);
        const attempt = await gate.reached;
        gate.open();
        await backend.whenSettled((call) => call.method === 'release' && call.token === attempt.token);
        await holder.release(held);
        expect(await holder.tryAcquire('deadline-in-flight')).not.toBeNull();
      });
    });

    it('reports a failing backend as LockBackendError, never as busy', async () => {
      const locks = service();
      backend.fail.add('tryAcquire');
      const error = await locks.tryAcquire('down').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LockBackendError);
      expect((error as LockBackendError).cause).toBeInstanceOf(Error);
      await expect(locks.acquire('down', { wait: 1_000 })).rejects.toBeInstanceOf(LockBackendError);
    });
  });
}
