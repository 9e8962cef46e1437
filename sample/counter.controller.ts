import { Controller, Delete, Get, HttpCode, Param, Post } from '@nestjs/common';
import { currentLock, WithLock } from '../lib';
import { CounterStore } from './counter.store';

/** Three ways to increment a counter: without a lock, with one, and with one that never waits. */
@Controller('counters')
export class CounterController {
  constructor(private readonly store: CounterStore) {}

  /** Read, wait, write: concurrent calls overwrite each other. */
  @Post(':name/unsafe')
  async unsafe(@Param('name') name: string): Promise<{ value: number }> {
    return { value: await this.increment(name) };
  }

  /** The same work under a lock: calls queue up fairly and none is lost. */
  @Post(':name/safe')
  @WithLock((name: string) => `counter:${name}`, { wait: 30_000 })
  async safe(@Param('name') name: string): Promise<{ value: number; fence: string }> {
    return { value: await this.increment(name), fence: String(currentLock()!.fence) };
  }

  /** Never waits: a busy lock answers 409 Conflict with a JSON body naming the key. */
  @Post(':name/now')
  @WithLock((name: string) => `counter:${name}`, { wait: 0 })
  async now(@Param('name') name: string): Promise<{ value: number }> {
    return { value: await this.increment(name) };
  }

  @Get(':name')
  async get(@Param('name') name: string): Promise<{ value: number }> {
    return { value: await this.store.read(name) };
  }

  @Delete()
  @HttpCode(204)
  reset(): void {
    this.store.reset();
  }

  private async increment(name: string): Promise<number> {
    const value = await this.store.read(name);
    await this.store.write(name, value + 1);
    return value + 1;
  }
}
