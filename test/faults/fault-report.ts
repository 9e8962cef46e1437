import type { FaultCaseResult } from './fault-runner';

/** One line per case for logs and failure messages: what was checked and what was found. */
export function summarise(result: FaultCaseResult): string {
  const r = result.report;
  const paused = r.pausedHolders.map(
    (p) => `paused ${p.worker}: signal ${p.signalFired ? 'fired' : 'SILENT'}, stale writes ${p.staleAcceptedWrites}`,
  );
  return [
    `${result.name}: ${r.events} events, ${r.holds} holds, ${r.acceptedWrites} writes accepted, ${r.rejectedWrites} rejected`,
    `overlaps ${r.overlaps.length}, lost writes ${r.lostWrites.length}, out-of-order ${r.outOfOrderWrites.length}, liveness ${r.livenessViolations.length}`,
    `withLock resolved although not held ${r.resolvedUnheld.length}, stale "held" answers ${r.staleGuards.length}, stuck keys ${r.stuckKeys.length}, places not back ${r.lostPlaces.length}, overdue calls ${r.overdueCalls.length}`,
    `calls resolved ${r.outcomes.resolved}, lost ${r.outcomes.lost}, timed out ${r.outcomes.timeout}, aborted ${r.outcomes.aborted}, failed ${r.outcomes.error}`,
    `longest gap between acquisitions ${Math.round(r.longestAcquisitionGap)} ms, lost signals ${r.disturbances.lost}, backend errors ${r.disturbances.errors}, timeouts ${r.disturbances.timeouts}`,
    ...paused,
    `final value ${result.finalValue}, violations ${r.violations}`,
  ].join('; ');
}
