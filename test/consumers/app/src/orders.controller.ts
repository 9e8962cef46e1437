import { Controller, Get, Param, Post } from '@nestjs/common';
import { currentLock, DistributedLock, WithLock } from 'nestjs-distributed-lock';
import { BackendHealth } from './backend-health.js';
import { moduleIdentity } from './module-identity.js';

@Controller()
export class OrdersController {
  /** Requests that hold their order's lock until released (or 20 s, whichever comes first). */
  private readonly holding = new Map<string, () => void>();

  constructor(
    private readonly locks: DistributedLock,
    private readonly health: BackendHealth,
  ) {}

  @Post('orders/:id/hold')
  @WithLock((id: string) => `order:${id}`) // the module's wait: LOCK_WAIT
  async hold(@Param('id') id: string): Promise<{ id: string; fence: string }> {
    const fence = String(currentLock()!.fence);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 20_000);
      this.holding.set(id, () => {
        clearTimeout(timer);
        resolve();
      });
    });
    this.holding.delete(id);
    return { id, fence };
  }

  @Get('orders/:id/holding')
  isHolding(@Param('id') id: string): { holding: boolean } {
    return { holding: this.holding.has(id) };
  }

  @Post('orders/:id/release')
  release(@Param('id') id: string): { released: boolean } {
    const release = this.holding.get(id);
    release?.();
    return { released: release !== undefined };
  }

  @Get('health')
  health_(): Promise<{ backend: string; answers: boolean }> {
    return this.health.check();
  }

  /** Whether the classes the app sees are the ones the library uses (one copy of each). */
  @Get('identity')
  identity(): Record<string, boolean> {
    return moduleIdentity(this.locks);
  }

  /** The stack of an error thrown inside the library (with --enable-source-maps: TypeScript lines). */
  @Get('library-stack')
  async libraryStack(): Promise<{ stack: string }> {
    const error = await this.locks.tryAcquire('').then(
      () => new Error('an empty key was accepted'),
      (thrown: Error) => thrown,
    );
    return { stack: error.stack ?? '' };
  }
}
