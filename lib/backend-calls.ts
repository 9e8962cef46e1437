import type { Logger } from '@nestjs/common';
import { releaseOn, type HandOff, type LockBackend, type ReleaseResult } from './backends/lock-backend';
import { BackgroundWork } from './background-work';
import { errorText, InvalidLockOptionsError, LockBackendError, LockError } from './lock.errors';
import type { Acquisition, AcquisitionHost } from './lock-acquisition';
import { monotonicNow, scheduleAt } from './lock-clock';
import type { Lease } from './held-lock';
import type { BackendOperation } from './telemetry/lock-telemetry';
import type { ServiceTelemetry } from './telemetry/service-telemetry';

/**
 * A service's calls to its backend outside the waits themselves: releases with the hand-off they
 * made, give-backs in the background (awaited at shutdown), the watchdog's batched extensions, the
 * ping, and what every failure among them becomes: mapped to a `LockError` and counted, once.
 * It is also what an `Acquisition` needs from the service (`AcquisitionHost`).
 */
export class BackendCalls implements AcquisitionHost {
  /** Waits in progress, by token: shutdown ends them, a hand-off wakes them. */
  readonly waiting = new Map<string, Acquisition>();
  /** Set by the service when it begins to shut down. */
  closing = false;
  /** Releases still running in the background (abandoned waits), awaited at shutdown. */
  private readonly cleanups = new BackgroundWork();

  constructor(
    readonly backend: LockBackend,
    private readonly telemetry: ServiceTelemetry,
    private readonly logger: Logger,
  ) {}

  /** Resolves when the backend answers within `ms`; a `LockBackendError` otherwise. */
  async ping(ms: number): Promise<void> {
    let cancel: (() => void) | undefined;
    try {
      await Promise.race([
        this.backend.ping(),
        new Promise<never>((_, reject) => {
          cancel = scheduleAt(monotonicNow() + ms, () =>
            reject(new LockBackendError(this.backend.name, `the backend did not answer a ping within ${ms} ms`)),
          );
        }),
      ]);
    } catch (error) {
      throw this.backendFailure(error, 'ping');
    } finally {
      cancel?.();
    }
  }

  /**
   * A backend's failure in `operation` as the service reports it, counted: a LockError as it is,
   * anything else as LockBackendError.
   */
  backendFailure(error: unknown, operation: BackendOperation): LockError {
    // A ping may be the service's first call (the module pings at start, a health check any time).
    const telemetry = this.telemetry.current;
    if (telemetry.on && !(error instanceof InvalidLockOptionsError)) telemetry.backendError(operation);
    return error instanceof LockError
      ? error
      : new LockBackendError(this.backend.name, errorText(error), { cause: error });
  }

  /** The backend's release of `token` on `backendKey`, with the hand-off it made, if it says. */
  release(backendKey: string, token: string): Promise<ReleaseResult> | ReleaseResult {
    return this.backend.releaseWithHandOff
      ? this.backend.releaseWithHandOff(backendKey, token)
      : releaseOn(this.backend, backendKey, token);
  }

  /**
   * Releases `token` on `backendKey`; when the backend says it handed the key to a waiter of this
   * service, that waiter is woken now rather than by the event that follows. True when a lease was ended.
   */
  async releaseAndHandOver(backendKey: string, token: string): Promise<boolean> {
    const result = await this.release(backendKey, token);
    this.handedOverBy(backendKey, result);
    return result.released;
  }

  /** A call of this service handed `backendKey` to `handOff.token`: its waiter, if it is ours, is woken. */
  handedOver(backendKey: string, handOff: HandOff): void {
    this.waiting.get(handOff.token)?.handedOver(backendKey, handOff);
  }

  /** Every hand-off a release answered with (several when waiters took a shared or limited key together). */
  handedOverBy(backendKey: string, result: ReleaseResult): void {
    if (result.handedTo) this.handedOver(backendKey, result.handedTo);
    if (result.alsoHandedTo) for (const handOff of result.alsoHandedTo) this.handedOver(backendKey, handOff);
  }

  /** Releases `token` on `key` in the background: the wait was abandoned, nothing may stay held or queued. */
  giveBack(backendKey: string, token: string): void {
    this.cleanups.run(this.releaseAndHandOver(backendKey, token), (error) => {
      this.backendFailure(error, 'release');
      this.logger.warn(`Cleaning up an abandoned wait on "${backendKey}" failed: ${errorText(error)}`);
    });
  }

  /** Settles once the give-backs under way are over, or after `ms`. */
  settleGiveBacks(ms: number): Promise<void> {
    return this.cleanups.settle(ms);
  }

  /** The watchdog's extensions, in one call where the backend has `extendMany`; one result per item. */
  async extendBatch(items: { key: string; token: string; ttl: number }[]): Promise<Array<boolean | Error>> {
    if (this.backend.extendMany) {
      try {
        return this.countFailedExtensions(await this.backend.extendMany(items));
      } catch (error) {
        this.backendFailure(error, 'extend');
        return items.map(() => error as Error);
      }
    }
    return this.countFailedExtensions(
      await Promise.all(
        items.map((item) =>
          this.backend.extend(item.key, item.token, item.ttl).catch((error: unknown) => error as Error),
        ),
      ),
    );
  }

  /**
   * Sets the lease to end `ms` from now (minHold) and leaves it to expire. True/false as the backend
   * answered; undefined when it failed (logged: the lease then ends by its TTL).
   */
  async keepFor(lease: Lease, ms: number): Promise<boolean | undefined> {
    try {
      return await this.backend.extend(lease.backendKey, lease.token, ms);
    } catch (error) {
      this.backendFailure(error, 'extend');
      this.logger.warn(
        `Keeping lock "${lease.guard.key}" for its minHold failed (it ends by its TTL instead): ${errorText(error)}`,
      );
      return undefined;
    }
  }

  /** Releasing the lease after its work failed: logged, counted; the lease runs out by its TTL. */
  releaseFailed(lease: Lease, error: unknown, workError: unknown): void {
    this.backendFailure(error, 'release');
    // The work's own outcome is what the caller gets.
    this.logger.warn(
      `Releasing lock "${lease.guard.key}" failed (it will expire within its TTL): ${errorText(error)}` +
        (workError === undefined ? '' : ' (the work had failed too; its error is the one thrown)'),
    );
  }

  private countFailedExtensions(results: Array<boolean | Error>): Array<boolean | Error> {
    for (const result of results) if (result instanceof Error) this.backendFailure(result, 'extend');
    return results;
  }
}
