import type { Span } from '@opentelemetry/api';
import { ATTRIBUTES, EVENTS, type AcquireOutcome, type LostReason } from './lock-telemetry.names';
import type { OtelApi } from './otel-api.loader';

/**
 * The span of one `withLock` call. Events mark the grant (`lock.acquired`), a loss (`lock.lost`)
 * and the end of the hold (`lock.released`); the wait is the time from the start to the grant.
 */
export class LockSpan {
  constructor(
    private readonly api: OtelApi,
    readonly span: Span,
  ) {}

  /** Runs `fn(arg)` with this span active, so spans the work starts are its children. */
  run<A, T>(fn: (arg: A) => T, arg: A): T {
    const { context, trace } = this.api;
    return context.with(trace.setSpan(context.active(), this.span), fn, undefined, arg);
  }

  acquired(fence: bigint): void {
    this.span.addEvent(EVENTS.acquired, { [ATTRIBUTES.fence]: fence.toString() });
  }

  lost(reason: LostReason): void {
    this.span.addEvent(EVENTS.lost, { [ATTRIBUTES.lostReason]: reason });
  }

  released(): void {
    this.span.addEvent(EVENTS.released);
  }

  /** Ends the span: `outcome` as `lock.outcome` (when it was an acquisition), `error` as its status and exception. */
  end(outcome: AcquireOutcome | undefined, error?: unknown): void {
    if (outcome !== undefined) this.span.setAttribute(ATTRIBUTES.outcome, outcome);
    if (error !== undefined) {
      this.span.recordException(error instanceof Error ? error : String(error));
      this.span.setStatus({
        code: this.api.SpanStatusCode.ERROR,
        message: error instanceof Error ? error.message : String(error),
      });
    }
    this.span.end();
  }
}
