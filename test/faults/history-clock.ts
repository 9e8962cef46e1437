/**
 * The clock of lock histories: milliseconds of the machine's monotonic clock (CLOCK_MONOTONIC, what
 * `process.hrtime` reads), one clock for every process on the machine. `performance.timeOrigin` is
 * read from the wall clock once per process, so two processes that add `performance.now()` to it can
 * disagree by a fraction of a millisecond — as long as a hand-off takes — and more after a clock
 * step; histories merged from several workers need the shared clock to order their events.
 */
export function historyNow(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
