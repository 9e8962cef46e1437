/**
 * Soak mode of the fault suite: `npm run test:soak -- --minutes N [--seed S] [--only TEXT] [--dimension client|infrastructure]`.
 *
 * Runs the quick suite's cases again and again for N minutes, each time with a shape drawn from a
 * seeded generator (workers, TTL, work time, run length, when the fault starts), and writes
 * reports/soak-<time>.json (every case's report, without the raw histories) and
 * reports/soak-<time>.txt (a summary), and the whole history of every run that broke a rule
 * (reports/soak-<time>-round-<n>.history.json). Exits 1 when any history broke a rule.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { clientCaseDefinitions } from './client-cases';
import { faultCaseDefinitions, type CaseShape } from './fault-cases';
import { runFaultCase } from './fault-runner';
import { summarise } from './fault-report';
import { seededRandom } from '../../lib/testing/seeded-random';

function shapeFrom(random: () => number): CaseShape {
  const between = (low: number, high: number): number => Math.round(low + random() * (high - low));
  const ttl = between(600, 2_000);
  return {
    workers: between(2, 6),
    ttl,
    workMs: between(1, 40),
    durationMs: between(4_000, 12_000),
    faultAfterMs: between(200, 2_500),
    knob: random(),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '10' },
      seed: { type: 'string' },
      only: { type: 'string' },
      dimension: { type: 'string' },
    },
  });
  const minutes = Number(values.minutes);
  if (!(minutes > 0 && minutes <= 24 * 60))
    throw new Error(`--minutes must be a number from 0 to 1440, got ${values.minutes}`);
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
  const random = seededRandom(seed);
  const definitions = [...faultCaseDefinitions(), ...clientCaseDefinitions()].filter(
    (d) =>
      (!values.only || d.name.includes(values.only)) &&
      (!values.dimension || (d.dimension ?? 'infrastructure') === values.dimension),
  );
  if (definitions.length === 0) throw new Error(`no case matches --only ${values.only}`);

  const started = Date.now();
  const stamp = new Date(started).toISOString().replace(/[:.]/g, '-');
  const reportsDir = join(__dirname, '..', '..', 'reports');
  mkdirSync(reportsDir, { recursive: true });
  const until = started + minutes * 60_000;
  const runs: Array<Record<string, unknown>> = [];
  const lines: string[] = [];
  let violations = 0;
  let failures = 0;
  console.log(`soak: ${definitions.length} cases, ${minutes} min, seed ${seed}`);

  for (let round = 0; Date.now() < until; round++) {
    const definition = definitions[round % definitions.length];
    const shape = shapeFrom(random);
    const { faultCase, cleanup } = await definition.prepare(shape);
    try {
      const result = await runFaultCase(faultCase);
      const { report } = result;
      // The unfenced demonstration is expected to lose updates; everything else must break nothing.
      const broken = definition.unfenced
        ? 0
        : report.violations + (result.finalValue === report.acceptedWrites ? 0 : 1);
      violations += broken;
      const missed = definition.missed?.(result.history);
      if (result.workerErrors.length > 0 || missed) failures++;
      const line = `${definition.name} ${JSON.stringify(shape)}: ${summarise(result)}${result.workerErrors.length ? `; worker errors: ${result.workerErrors.join(' | ')}` : ''}${missed ? `; MISSED: ${missed}` : ''}`;
      lines.push(line);
      console.log(line);
      // A broken history is kept whole, with the holds the checker built from it, to be read later.
      if (broken > 0) {
        const file = join(reportsDir, `soak-${stamp}-round-${round}.history.json`);
        writeFileSync(
          file,
          JSON.stringify(
            { case: definition.name, shape, report, history: result.history },
            (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value),
            2,
          ),
        );
        console.log(`  the whole history: ${file}`);
      }
      runs.push({
        case: definition.name,
        unfenced: definition.unfenced === true,
        shape,
        finalValue: result.finalValue,
        workerErrors: result.workerErrors,
        report: {
          ...report,
          overlaps: report.overlaps.length,
          pausedHolders: report.pausedHolders.map((p) => ({ ...p, fence: String(p.fence) })),
          resolvedUnheld: report.resolvedUnheld.length,
          staleGuards: report.staleGuards.length,
          stuckKeys: report.stuckKeys.length,
          overdueCalls: report.overdueCalls.length,
        },
        violations: broken,
      });
    } catch (error) {
      failures++;
      const line = `${definition.name} ${JSON.stringify(shape)}: the run failed: ${error instanceof Error ? error.message : String(error)}`;
      lines.push(line);
      console.log(line);
    } finally {
      await cleanup();
    }
  }

  const fenced = runs.filter((r) => !r.unfenced);
  const demonstration = runs.filter((r) => r.unfenced);
  const total = (pick: (r: Record<string, any>) => number, of = runs): number => of.reduce((n, r) => n + pick(r), 0);
  const summary = [
    `Soak of ${((Date.now() - started) / 60_000).toFixed(1)} min, seed ${seed}: ${runs.length} histories checked (${new Set(runs.map((r) => r.case)).size} cases), ${failures} runs with failures.`,
    `Fenced runs: ${fenced.length}; events ${total((r) => r.report.events, fenced)}, holds ${total((r) => r.report.holds, fenced)}, writes accepted ${total((r) => r.report.acceptedWrites, fenced)}, stale writes rejected ${total((r) => r.report.rejectedWrites, fenced)}, lost signals ${total((r) => r.report.disturbances.lost, fenced)}, violations ${violations}.`,
    `Of those: withLock resolved although not held ${total((r) => r.report.resolvedUnheld, fenced)}, stale "held" answers ${total((r) => r.report.staleGuards, fenced)}, stuck keys ${total((r) => r.report.stuckKeys, fenced)}, overdue calls ${total((r) => r.report.overdueCalls, fenced)}; lock calls lost ${total((r) => r.report.outcomes.lost, fenced)}, failed ${total((r) => r.report.outcomes.error, fenced)}.`,
    `Fence check off (demonstration): ${demonstration.length} runs, updates lost ${total((r) => r.report.acceptedWrites - r.finalValue, demonstration)} (of ${total((r) => r.report.acceptedWrites, demonstration)} accepted writes), runs without a lost update ${demonstration.filter((r) => (r.report as { lostWrites: unknown[] }).lostWrites.length === 0).length}.`,
  ];
  writeFileSync(
    join(reportsDir, `soak-${stamp}.json`),
    JSON.stringify(
      { seed, minutes, summary, runs },
      (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value),
      2,
    ),
  );
  writeFileSync(join(reportsDir, `soak-${stamp}.txt`), [...summary, '', ...lines].join('\n') + '\n');
  console.log(`\n${summary.join('\n')}\nreports/soak-${stamp}.json and .txt written`);
  if (violations > 0 || failures > 0) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
