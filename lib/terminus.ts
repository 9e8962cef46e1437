/** `nestjs-distributed-lock/terminus`: a `@nestjs/terminus` health indicator for the lock backend. */
export { LockHealthIndicator } from './health/lock-health.indicator';
export type { LockHealthOptions } from './health/lock-health.indicator';
