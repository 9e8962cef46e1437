import { Controller, Get, Injectable, Module, Post, type INestApplication } from '@nestjs/common';
import { EventEmitter2, EventEmitterModule, OnEvent } from '@nestjs/event-emitter';
import { Cron, ScheduleModule, SchedulerRegistry } from '@nestjs/schedule';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import {
  currentLock,
  DistributedLock,
  InvalidLockOptionsError,
  LockModule,
  LockTimeoutError,
  WithLock,
  type HeldLock,
} from '../../lib';

/** What each locked method saw while it ran. */
const seen: Array<{ method: string; self: unknown; lock: HeldLock | undefined; args: unknown[] }> = [];

@Controller('routes')
class RoutesController {
  @Get('above')
  @WithLock('route-above')
  above(): { lock: string | undefined } {
    seen.push({ method: 'above', self: this, lock: currentLock(), args: [] });
    return { lock: currentLock()?.key };
  }

  @WithLock('route-below')
  @Post('below')
  below(): { lock: string | undefined } {
    seen.push({ method: 'below', self: this, lock: currentLock(), args: [] });
    return { lock: currentLock()?.key };
  }
}

@Injectable()
class Jobs {
  readonly name = 'jobs';
  runs = 0;

  @Cron('0 0 1 1 *', { name: 'cron-above' })
  @WithLock('cron-above', { wait: 0, onBusy: 'skip' })
  cronAbove(): void {
    this.runs++;
    seen.push({ method: 'cronAbove', self: this, lock: currentLock(), args: [] });
  }

  @WithLock('cron-below', { wait: 0, onBusy: 'skip' })
  @Cron('0 0 1 1 *', { name: 'cron-below' })
  cronBelow(): void {
    seen.push({ method: 'cronBelow', self: this, lock: currentLock(), args: [] });
  }

  @OnEvent('order.above')
  @WithLock((id: string) => `order:${id}`)
  eventAbove(id: string): void {
    seen.push({ method: 'eventAbove', self: this, lock: currentLock(), args: [id] });
  }

  @WithLock({ key: (id: string) => `order:${id}` })
  @OnEvent('order.below')
  eventBelow(id: string): void {
    seen.push({ method: 'eventBelow', self: this, lock: currentLock(), args: [id] });
  }

  @WithLock(function (this: Jobs, a: number, b: number) {
    return `${this.name}:${a + b}`;
  })
  async keyed(_a: number, _b: number): Promise<string | undefined> {
    return currentLock()?.key;
  }

  @WithLock('nested')
  async outer(): Promise<[bigint, bigint]> {
    const outerFence = currentLock()!.fence;
    const innerFence = await this.inner();
    return [outerFence, innerFence];
  }

  @WithLock('nested')
  async inner(): Promise<bigint> {
    return currentLock()!.fence;
  }

  @WithLock('busy', { wait: 0 })
  async throwsWhenBusy(): Promise<string> {
    this.runs++;
    return 'ran';
  }

  @WithLock('busy', { wait: 0, onBusy: 'skip' })
  async skipsWhenBusy(): Promise<string> {
    this.runs++;
    return 'ran';
  }

  @WithLock((value: unknown) => value as string)
  async badKey(_value: unknown): Promise<void> {}

  @WithLock(['set:b', 'set:a'], { wait: 0, onBusy: 'skip' })
  async fixedSet(): Promise<string | undefined> {
    this.runs++;
    return currentLock()?.key;
  }

  @WithLock(() => {
    throw new Error('no id');
  })
  async throwingKey(): Promise<void> {}
}

@Module({
  imports: [LockModule.forRoot(), ScheduleModule.forRoot(), EventEmitterModule.forRoot()],
  controllers: [RoutesController],
  providers: [Jobs],
})
class DecoratedModule {}

describe('@WithLock', () => {
  let app: INestApplication;
  let jobs: Jobs;
  let locks: DistributedLock;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [DecoratedModule] }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    jobs = app.get(Jobs);
    locks = app.get(DistributedLock);
  });
  afterAll(() => app.close());
  beforeEach(() => {
    seen.length = 0;
  });

  it.each([
    ['above', 'get', '/routes/above', 'route-above', 200],
    ['below', 'post', '/routes/below', 'route-below', 201],
  ] as const)('keeps the route of a handler with @WithLock %s it', async (_where, method, path, key, status) => {
    const response = await request(app.getHttpServer())[method](path);
    expect(response.status).toBe(status);
    expect(response.body).toEqual({ lock: key });
    expect(seen[0].self).toBeInstanceOf(RoutesController);
  });

  it.each(['cron-above', 'cron-below'])(
    'keeps the @Cron job %s registered and runs it under the lock',
    async (name) => {
      const job = app.get(SchedulerRegistry).getCronJob(name);
      await job.fireOnTick();
      await new Promise((resolve) => setImmediate(resolve));
      expect(seen).toHaveLength(1);
      expect(seen[0].lock?.key).toBe(name);
      expect(seen[0].self).toBe(jobs);
    },
  );

  it.each(['order.above', 'order.below'])(
    'keeps the @OnEvent listener %s and passes the arguments to the key function',
    async (event) => {
      await app.get(EventEmitter2).emitAsync(event, '42');
      expect(seen).toHaveLength(1);
      expect(seen[0].lock?.key).toBe('order:42');
      expect(seen[0].args).toEqual(['42']);
      expect(seen[0].self).toBe(jobs);
    },
  );

  it('calls the key function with the arguments and the instance as this', async () => {
    await expect(jobs.keyed(2, 3)).resolves.toBe('jobs:5');
  });

  it('runs a nested call on the same key inside the outer hold', async () => {
    const [outer, inner] = await jobs.outer();
    expect(inner).toBe(outer);
    expect(await locks.tryAcquire('nested')).not.toBeNull();
  });

  it("throws LockTimeoutError when busy with onBusy 'throw', without running the method", async () => {
    const guard = (await locks.tryAcquire('busy'))!;
    const runs = jobs.runs;
    await expect(jobs.throwsWhenBusy()).rejects.toBeInstanceOf(LockTimeoutError);
    expect(jobs.runs).toBe(runs);
    await locks.release(guard);
    await expect(jobs.throwsWhenBusy()).resolves.toBe('ran');
  });

  it("returns undefined when busy with onBusy 'skip', without running the method", async () => {
    const guard = (await locks.tryAcquire('busy'))!;
    const runs = jobs.runs;
    await expect(jobs.skipsWhenBusy()).resolves.toBeUndefined();
    expect(jobs.runs).toBe(runs);
    await locks.release(guard);
    await expect(jobs.skipsWhenBusy()).resolves.toBe('ran');
  });

  it("takes a static list of keys, all or none, and skips with onBusy 'skip' when one is busy", async () => {
    // The innermost hold is the key that sorts last.
    await expect(jobs.fixedSet()).resolves.toBe('set:b');
    const guard = (await locks.tryAcquire('set:b'))!;
    const runs = jobs.runs;
    await expect(jobs.fixedSet()).resolves.toBeUndefined();
    expect(jobs.runs).toBe(runs);
    // set:a, taken before the busy set:b, was given back.
    const a = await locks.tryAcquire('set:a');
    expect(a).not.toBeNull();
    await locks.release(a!);
    await locks.release(guard);
  });

  it('does not skip a LockTimeoutError thrown by the method itself', async () => {
    class Inner {
      constructor(readonly lock: DistributedLock) {}
      @WithLock('skip-outer', { onBusy: 'skip' })
      async run(): Promise<void> {
        await this.lock.acquire('skip-inner', { wait: 0 });
      }
    }
    const instance = new Inner(locks);
    Object.assign(instance, { [Symbol.for('nestjs-distributed-lock:service')]: locks });
    const guard = (await locks.tryAcquire('skip-inner'))!;
    await expect(instance.run()).rejects.toBeInstanceOf(LockTimeoutError);
    await locks.release(guard);
  });

  it('rejects a key function that returns a non-string or throws, holding nothing', async () => {
    await expect(jobs.badKey(7)).rejects.toThrow(/must return a string or a list of keys, it returned 7/);
    await expect(jobs.badKey('')).rejects.toThrow(InvalidLockOptionsError);
    await expect(jobs.throwingKey()).rejects.toThrow(/the key function threw: no id/);
    await expect(jobs.throwingKey()).rejects.toBeInstanceOf(InvalidLockOptionsError);
  });
});

describe('@WithLock misuse', () => {
  it('says how to fix a class whose module does not import LockModule', async () => {
    @Injectable()
    class Orphan {
      @WithLock('orphan')
      async run(): Promise<string> {
        return 'ran';
      }
    }
    @Module({ providers: [Orphan] })
    class OrphanModule {}
    const moduleRef = await Test.createTestingModule({ imports: [OrphanModule] }).compile();
    const error = await moduleRef
      .get(Orphan)
      .run()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidLockOptionsError);
    expect((error as Error).message).toMatch(/import LockModule\.forRoot\(\.\.\.\) in the module that provides Orphan/);
    await moduleRef.close();
  });

  it('says the same for an instance made with new', async () => {
    class Plain {
      @WithLock('plain')
      async run(): Promise<void> {}
    }
    await expect(new Plain().run()).rejects.toThrow(/not "new Plain\(\)"/);
  });

  it('refuses to decorate something that is not a method', () => {
    const descriptor: PropertyDescriptor = { get: () => 1 };
    expect(() => WithLock('k')({}, 'value', descriptor)).toThrow(InvalidLockOptionsError);
    expect(() => WithLock('k')({}, 'value', descriptor)).toThrow(/can only decorate methods: value is undefined/);
  });

  it.each([
    [() => WithLock(''), /Invalid lock key: .*got an empty string/],
    [() => WithLock(42 as never), /Invalid @WithLock key: expected a string, a function/],
    [() => WithLock({ key: 42 } as never), /Invalid @WithLock key: expected a string, a list of keys or a function/],
    [
      () => WithLock('k', { ttl: 0 }),
      /Invalid @WithLock ttl: expected an integer number of milliseconds from 1 to 2147483647/,
    ],
    [() => WithLock('k', { wait: -1 }), /Invalid @WithLock wait: expected a number of milliseconds >= 0/],
    [
      () => WithLock('k', { onBusy: 'queue' as never }),
      /Invalid @WithLock onBusy: expected 'throw' or 'skip', got "queue"/,
    ],
    [() => WithLock('k', { timeout: 5 } as never), /unknown option "timeout"; allowed: ttl, wait, onBusy/],
    [() => WithLock({ key: 'k' } as never, { ttl: 5 }), /pass either \(key, options\) or \(\{ key, \.\.\.options \}\)/],
  ])('rejects bad decorator arguments at class definition (%#)', (decorate, message) => {
    expect(decorate).toThrow(InvalidLockOptionsError);
    expect(decorate).toThrow(message);
  });
});
