import { Controller, Get, Injectable, Module, Param, Post, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { setTimeout as sleep } from 'node:timers/promises';
import { currentLock, DistributedLock, LockModule, memoryBackend, WithLock, type LockBackend } from '../../lib';
import { redisBackend } from '../../lib/redis';
import { deleteSharedKeys, sharedRedisOptions, testRunPrefix } from '../support/shared-redis';

/**
 * `@WithLock` with a key function that returns two keys, on a real Nest app over HTTP: money moves
 * between two accounts in a read-modify-write with an await in the middle, so any overlap of two
 * transfers on one account would lose or create money. Transfers run in both directions at once;
 * both keys are taken in sorted order, so none waits on another forever.
 */

@Injectable()
class Accounts {
  readonly balances = new Map<string, number>();

  balance(id: string): number {
    return this.balances.get(id) ?? 100;
  }
}

@Controller('transfers')
class TransferController {
  constructor(private readonly accounts: Accounts) {}

  @Post(':from/:to')
  @WithLock((from: string, to: string) => [`account:${from}`, `account:${to}`], { wait: 20_000 })
  async move(@Param('from') from: string, @Param('to') to: string) {
    const fromBalance = this.accounts.balance(from);
    const toBalance = this.accounts.balance(to);
    await sleep(1);
    this.accounts.balances.set(from, fromBalance - 1);
    this.accounts.balances.set(to, toBalance + 1);
    // currentLock() is the innermost hold: the key that sorts last.
    return { fence: String(currentLock()!.fence), key: currentLock()!.key };
  }

  @Post(':from/:to/now')
  @WithLock((from: string, to: string) => [`account:${from}`, `account:${to}`], { wait: 0 })
  moveNow(@Param('from') from: string, @Param('to') to: string) {
    return { from, to };
  }

  @Get(':id')
  balance(@Param('id') id: string) {
    return { balance: this.accounts.balance(id) };
  }
}

@Module({})
class TransferModule {
  static register(backend: LockBackend, keyPrefix: string) {
    return {
      module: TransferModule,
      imports: [LockModule.forRoot({ backend, keyPrefix })],
      controllers: [TransferController],
      providers: [Accounts],
    };
  }
}

describe.each([
  ['Express', 'memory', () => new ExpressAdapter()],
  ['Fastify', 'memory', () => new FastifyAdapter()],
  ['Express', 'redis', () => new ExpressAdapter()],
] as const)('@WithLock with two keys on %s, %s backend', (_platform, kind, adapter) => {
  let app: INestApplication;
  let url: string;
  const prefix = testRunPrefix('e2e-transfer');

  beforeEach(async () => {
    const backend = kind === 'memory' ? memoryBackend() : redisBackend({ connection: sharedRedisOptions(prefix) });
    app = await NestFactory.create(TransferModule.register(backend, 'transfer:'), adapter(), { logger: false });
    await app.listen(0, '127.0.0.1');
    url = await app.getUrl();
  });
  afterEach(() => app.close());
  afterAll(() => deleteSharedKeys(prefix));

  const post = async (path: string): Promise<{ status: number; body: Record<string, unknown> }> => {
    const response = await fetch(`${url}${path}`, { method: 'POST' });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  it('runs 60 concurrent transfers in both directions between three accounts: none overlaps, none deadlocks', async () => {
    const routes = ['a/b', 'b/a', 'b/c', 'c/b', 'c/a', 'a/c'];
    const results = await Promise.all(Array.from({ length: 60 }, (_, i) => post(`/transfers/${routes[i % 6]}`)));
    expect(results.map((r) => r.status)).toEqual(new Array(60).fill(201));
    expect(results[0].body.key).toBe('account:b');
    // Every account sent and received 20 times: had two transfers on one account overlapped, an
    // update would have been lost and the balances would not be back at 100.
    const balances = await Promise.all(
      ['a', 'b', 'c'].map(
        async (id) => ((await (await fetch(`${url}/transfers/${id}`)).json()) as { balance: number }).balance,
      ),
    );
    expect(balances).toEqual([100, 100, 100]);
  });

  it('answers 409 naming the busy key when one of the two is held, and takes neither', async () => {
    const locks = app.get(DistributedLock);
    const held = (await locks.tryAcquire('account:y'))!;
    const busy = await post('/transfers/x/y/now');
    expect(busy.status).toBe(409);
    expect(busy.body).toMatchObject({ statusCode: 409, key: 'account:y' });
    // account:x was given back: a caller takes it at once.
    const x = await locks.tryAcquire('account:x');
    expect(x).not.toBeNull();
    await locks.release(x!);
    await locks.release(held);
    expect((await post('/transfers/x/y/now')).status).toBe(201);
    expect(locks.heldCount).toBe(0);
  });
});
