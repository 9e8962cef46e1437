import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import type { ContentionResult, ThroughputResult } from './lock-bench.harness';
import { machineFacts, type MachineFacts } from './machine-facts';

/** Identifies the layout of a results file; `npm run bench:report` refuses files of another layout. */
export const RESULTS_FORMAT = 'nestjs-distributed-lock-bench/1';

/**
 * What a row measures, so a chart can colour it the same in every benchmark: this library (and its
 * variants), a package it is compared with, a floor (the least any lock on that server costs) or a
 * ceiling (the best the harness or the server can do without a lock over the network).
 */
export type Role = 'library' | 'library-variant' | 'anchor' | 'floor' | 'ceiling';

export type ThroughputRow = ThroughputResult & { role: Role; rounds?: number[] };
export type ContentionRow = Omit<ContentionResult, 'waits'> & { role: Role; waits: number[] };

/** What a benchmark measured: its settings, then any of the common tables and whatever is its own. */
export interface ResultsBody {
  settings: Record<string, unknown>;
  throughput?: ThroughputRow[];
  contention?: ContentionRow[];
  [more: string]: unknown;
}

export interface ResultsFile extends ResultsBody {
  format: typeof RESULTS_FORMAT;
  bench: 'memory' | 'redis' | 'postgres' | 'http' | 'modes';
  /** True when run with --quick: shorter runs, for trying the scripts, not for quoting. */
  quick: boolean;
  facts: MachineFacts;
  finished: { date: string; loadAverage: number[] };
}

/**
 * The options every benchmark script takes besides its own: `--json <file>` writes the results there
 * as well as printing the tables; `--quick` shortens every run (for trying a change, never for quoting).
 */
export const BENCH_OPTIONS = {
  json: { type: 'string' },
  quick: { type: 'boolean', default: false },
} as const;

/** Parses the command line of a benchmark that has no options of its own. */
export function benchArgs(): { json?: string; quick: boolean } {
  return parseArgs({ options: BENCH_OPTIONS }).values;
}

/** The wait samples in ms, rounded to the µs: enough for any chart, a third of the bytes. */
function roundWaits(waits: readonly number[]): number[] {
  return waits.map((w) => Math.round(w * 1000) / 1000);
}

export function contentionRow(result: ContentionResult, role: Role): ContentionRow {
  return { ...result, role, waits: roundWaits(result.waits) };
}

export function throughputRow(result: ThroughputResult, role: Role, rounds?: number[]): ThroughputRow {
  return { ...result, role, ...(rounds ? { rounds } : {}) };
}

/**
 * Collects the facts before anything is measured (the load average says most before the run adds to
 * it) and returns the writer that saves the results with them; it does nothing when no --json was given.
 */
export async function resultsWriter(
  bench: ResultsFile['bench'],
  args: { json?: string; quick: boolean },
): Promise<(body: ResultsBody) => void> {
  const facts = args.json ? await machineFacts() : undefined;
  return (body) => {
    if (!args.json || !facts) return;
    const file: ResultsFile = {
      format: RESULTS_FORMAT,
      bench,
      quick: args.quick,
      facts,
      finished: { date: new Date().toISOString(), loadAverage: loadavg().map((n) => Number(n.toFixed(2))) },
      ...body,
    };
    mkdirSync(dirname(args.json), { recursive: true });
    writeFileSync(args.json, `${JSON.stringify(file)}\n`);
    console.error(`results written to ${args.json}`);
  };
}
