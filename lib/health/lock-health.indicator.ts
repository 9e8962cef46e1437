import { Injectable } from '@nestjs/common';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import { DistributedLock } from '../distributed-lock';
import { errorText } from '../lock.errors';
import { validateOptionsObject, validateTtl } from '../lock.validation';

export interface LockHealthOptions {
  /** How long the backend may take to answer, in ms (default 1000). */
  timeout?: number;
}

/**
 * A health indicator for `@nestjs/terminus`: pings the lock backend of the app's `DistributedLock`
 * within a timeout. `up` carries the backend kind and the leases this instance holds; `down` the
 * backend kind and why (the backends' messages name host, port and user, never a password).
 *
 * Add it to the providers of a module that imports `TerminusModule`, and call it in a
 * `@HealthCheck()` route: `() => this.locks.isHealthy('locks')`.
 */
@Injectable()
export class LockHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly locks: DistributedLock,
  ) {}

  async isHealthy<const Key extends string = 'locks'>(
    key: Key = 'locks' as Key,
    options?: LockHealthOptions,
  ): Promise<HealthIndicatorResult<Key>> {
    const opts = validateOptionsObject('LockHealthIndicator options', options, ['timeout']);
    const timeout = opts.timeout === undefined ? undefined : validateTtl(opts.timeout, 'LockHealthIndicator timeout');
    const indicator = this.health.check(key);
    const backend = this.locks.backendName;
    try {
      await this.locks.ping(timeout);
      return indicator.up({ backend, held: this.locks.heldCount });
    } catch (error) {
      return indicator.down({ backend, message: errorText(error) });
    }
  }
}
