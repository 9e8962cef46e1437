import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { QUICK_SHAPE, type FaultCaseDefinition } from './fault-cases';
import { runFaultCase } from './fault-runner';
import { summarise } from './fault-report';

/** Faults that make the servers unreachable for longer than the TTL: the lock must stall, then recover. */
const BLOCKING = /kill -9, restart|CLIENT PAUSE|proxy drop|proxy partition/;

/**
 * Quick mode of the fault suite for one group of cases: each once, with the default shape. Workers
 * are separate OS processes on the public API; the checker reads their merged history. Each
 * case's summary is appended to reports/faults-quick.log. `npm run test:soak` runs the same cases
 * longer with random shapes.
 */
export function describeFaultCases(title: string, definitions: FaultCaseDefinition[]): void {
  describe(title, () => {
    it.each(definitions.map((definition) => [definition.name, definition] as const))(
      '%s',
      async (_name, definition) => {
        const { faultCase, cleanup } = await definition.prepare(QUICK_SHAPE);
        try {
          const result = await runFaultCase(faultCase);
          const { report } = result;
          const context = summarise(result);
          mkdirSync(join(__dirname, '../../reports'), { recursive: true });
          appendFileSync(join(__dirname, '../../reports/faults-quick.log'), `${new Date().toISOString()} ${context}\n`);
          expect({ context, workerErrors: result.workerErrors }).toEqual({ context, workerErrors: [] });
          // The work went on: writes to the resource, or, where every worker only holds a limited
          // key (no resource), holds.
          const onlyLimited =
            (faultCase.behaviours?.length ?? 0) >= (faultCase.workers ?? QUICK_SHAPE.workers) &&
            faultCase.behaviours!.every((behaviour) => behaviour.kind === 'limited');
          expect(onlyLimited ? report.holds : report.acceptedWrites).toBeGreaterThan(0);
          // The case's own behaviour (an escaped callback, a CPU block, an eviction...) did happen.
          expect({ context, missed: definition.missed?.(result.history) }).toEqual({ context, missed: undefined });

          if (definition.unfenced) {
            // The demonstration: without the fence check a paused holder's late write is accepted and
            // an update is lost. With the check (the case before it) the same workload loses none.
            expect(report.lostWrites.length).toBeGreaterThan(0);
            return;
          }
          expect({ context, violations: report.violations }).toEqual({ context, violations: 0 });
          expect(result.finalValue).toBe(report.acceptedWrites);
          if (definition.fault.startsWith('holder SIGSTOP')) {
            expect(report.pausedHolders).toHaveLength(1);
            expect(report.pausedHolders[0]).toMatchObject({ signalFired: true, staleAcceptedWrites: 0 });
            expect(report.rejectedWrites).toBeGreaterThanOrEqual(1);
          }
          if (definition.fault === 'holder SIGKILL') {
            expect(result.history.some((e) => e.type === 'fault' && e.fault === 'SIGKILL')).toBe(true);
          }
          if (BLOCKING.test(definition.fault)) {
            // The fault did bite: the holder caught in it was told (its signal fired), the lock was
            // unavailable for at least a TTL, and the work went on afterwards.
            expect(report.disturbances.lost).toBeGreaterThanOrEqual(1);
            expect(report.longestAcquisitionGap).toBeGreaterThanOrEqual(QUICK_SHAPE.ttl);
          }
        } finally {
          await cleanup();
        }
      },
      90_000,
    );
  });
}
