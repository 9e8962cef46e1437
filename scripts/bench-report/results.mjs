// Reads the JSON files the benchmark scripts write (`--json <file>`) and turns them into the rows the
// charts and the Markdown page are drawn from. Everything here but loadResults is pure.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const RESULTS_FORMAT = 'nestjs-distributed-lock-bench/1';
export const BENCHES = ['memory', 'redis', 'postgres', 'http'];

/** What each role means, in the order rows and legends list them. */
export const ROLES = [
  { role: 'library', label: 'this library', color: '#1f5fa8' },
  { role: 'library-variant', label: 'this library, other setting', color: '#7fb0e0' },
  { role: 'anchor', label: 'other lock package', color: '#e8812c' },
  { role: 'floor', label: 'floor: bare client, same server', color: '#8c8c8c' },
  { role: 'ceiling', label: 'ceiling: no lock over the network', color: '#4c9a5b' },
];
const roleIndex = (role) => {
  const i = ROLES.findIndex((r) => r.role === role);
  return i === -1 ? ROLES.length : i;
};
export const roleLabel = (role) => ROLES.find((r) => r.role === role)?.label ?? role;

/** Reads `<bench>.json` for every bench found in `dir`; a file of another layout is an error. */
export function loadResults(dir) {
  const files = {};
  for (const bench of BENCHES) {
    const path = join(dir, `${bench}.json`);
    if (!existsSync(path)) continue;
    const file = JSON.parse(readFileSync(path, 'utf8'));
    if (file.format !== RESULTS_FORMAT || file.bench !== bench) {
      throw new Error(`${path} is not a ${bench} results file of layout ${RESULTS_FORMAT}`);
    }
    files[bench] = file;
  }
  return files;
}

/** `15.20 (Debian 15.20-0+deb12u1)` → `15.20`. */
const shortVersion = (version) => (version ? String(version).split(' ')[0] : 'unknown');

/** The name a backend's panel carries: the server and its version. */
export function backendLabel(bench, files) {
  const facts = (files[bench] ?? Object.values(files)[0])?.facts;
  if (bench === 'redis') return `Redis ${shortVersion(facts?.redis)}`;
  if (bench === 'postgres') return `PostgreSQL ${shortVersion(facts?.postgres)}`;
  if (bench === 'memory') return 'memory backend (one process)';
  return bench;
}

const gib = (bytes) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
const day = (iso) => iso.slice(0, 10);
const unique = (values) => [...new Set(values.filter((v) => v !== undefined && v !== null))];

/**
 * The lines every chart carries under its title: the machine, the servers, the versions and the date
 * of the runs it shows (a report assembled from runs of different days or commits says so).
 */
export function factsLines(runs) {
  if (runs.length === 0) return [];
  const facts = runs.map((r) => r.facts);
  const f = facts[0];
  const version = (name) => `${name} ${f.packages[name] ?? '?'}`;
  const commits = unique(facts.map((x) => x.commit));
  const anchors = ['redlock', 'redis-semaphore', 'advisory-lock'].filter((name) => f.packages[name]);
  const drivers = Object.keys(f.packages).filter(
    (name) => name !== 'nestjs-distributed-lock' && !anchors.includes(name) && f.packages[name],
  );
  const days = unique(facts.map((x) => day(x.date))).sort();
  const loads = facts.map((x) => x.loadAverage[0]);
  const load = `${Math.min(...loads).toFixed(2)}${loads.length > 1 ? `–${Math.max(...loads).toFixed(2)}` : ''}`;
  return [
    `Machine: ${f.cpuModel} × ${f.cpuCount} cores, ${gib(f.totalMemoryBytes)}, ${f.os}; Node ${f.node}; ` +
      `Redis ${shortVersion(f.redis)}; PostgreSQL ${shortVersion(f.postgres)} (same machine, loopback)`,
    `${version('nestjs-distributed-lock')}${commits.length ? ` (commit ${commits.join(', ')})` : ''} against ` +
      `${anchors.map(version).join(', ')}`,
    `Clients and tools: ${drivers.map(version).join(', ')}`,
    `Run ${days.join(' to ')}, once, on one shared machine where other work ran at the same time ` +
      `(1-min load average at start ${load})` +
      (runs.some((r) => r.quick) ? '. QUICK RUN (--quick): short runs, not figures to quote' : ''),
  ];
}

/** The order of the lock benchmarks' panels in every chart. */
export const PANEL_ORDER = ['redis', 'postgres', 'memory'];

/** Contended rows of every lock bench, in panel order, each with its role's place. */
export function contentionRows(files) {
  const rows = [];
  for (const bench of PANEL_ORDER) {
    const file = files[bench];
    if (!file?.contention) continue;
    const backend = backendLabel(bench, files);
    file.contention.forEach((c, i) => {
      rows.push({
        bench,
        backend,
        name: c.name,
        role: c.role,
        roleLabel: roleLabel(c.role),
        order: roleIndex(c.role) * 100 + i,
        utilisation: c.utilisation,
        acquisitionsPerSecond: c.acquisitions / (c.durationMs / 1000),
        p50: c.p50Wait,
        p99: c.p99Wait,
        max: c.maxWait,
        fairness: c.fairness,
        overlaps: c.overlaps,
        durationMs: c.durationMs,
        waits: c.waits,
      });
    });
  }
  const place = (bench) => PANEL_ORDER.indexOf(bench);
  return rows.sort((a, b) => place(a.bench) - place(b.bench) || a.order - b.order);
}

/** Uncontended rows with their ratio to the floor (or, on memory, the ceiling) at the same concurrency. */
export function throughputRows(files) {
  const rows = [];
  for (const bench of PANEL_ORDER) {
    const file = files[bench];
    if (!file?.throughput) continue;
    const backend = backendLabel(bench, files);
    const reference = bench === 'memory' ? 'ceiling' : 'floor';
    file.throughput.forEach((t, i) => {
      // The first floor row is the plain one (Redis also has an auto-pipelined floor).
      const base = file.throughput.find((b) => b.role === reference && b.concurrency === t.concurrency);
      rows.push({
        bench,
        backend,
        panel: `${backend}, ${t.concurrency} in flight`,
        name: t.name,
        role: t.role,
        roleLabel: roleLabel(t.role),
        order: roleIndex(t.role) * 100 + (i % 100),
        concurrency: t.concurrency,
        opsPerSecond: t.opsPerSecond,
        rounds: t.rounds,
        reference: base?.name,
        referenceRatio: base ? t.opsPerSecond / base.opsPerSecond : undefined,
      });
    });
  }
  const place = (bench) => PANEL_ORDER.indexOf(bench);
  return rows.sort((a, b) => place(a.bench) - place(b.bench) || a.concurrency - b.concurrency || a.order - b.order);
}

export const HTTP_BASELINES = {
  plain: 'the same route without a lock',
  bare: 'bare ioredis, the same two round trips',
};

/** One row per backend and round of the HTTP benchmark. */
export function httpRows(files) {
  return (files.http?.rounds ?? []).map((r) => ({
    backend: r.backend,
    round: r.round,
    baseline: HTTP_BASELINES[r.baseline] ?? r.baseline,
    baselineRps: r.baselineRoute.requestsPerSecond,
    lockedRps: r.lockedRoute.requestsPerSecond,
    baselineP99: r.baselineRoute.latencyP99Ms,
    lockedP99: r.lockedRoute.latencyP99Ms,
    ratio: r.ratio,
    // Redis: the route running the library's two scripts through bare ioredis (results from before it have none).
    scriptsRps: r.scriptsRoute?.requestsPerSecond,
    scriptsRatio: r.scriptsRatio,
  }));
}

/** Mean ratio per backend, in the order the rows have them. */
export function httpMeans(rows) {
  return unique(rows.map((r) => r.backend)).map((backend) => {
    const mine = rows.filter((r) => r.backend === backend);
    const scriptsRatios = mine.map((r) => r.scriptsRatio).filter((ratio) => ratio !== undefined);
    return {
      backend,
      ratio: meanOf(mine.map((r) => r.ratio)),
      scriptsRatio: scriptsRatios.length > 0 ? meanOf(scriptsRatios) : undefined,
      rounds: mine.length,
    };
  });
}

/** Waits below this (ms) fall in the lowest bin: a log axis has no zero. */
export const MIN_WAIT_MS = 0.01;
export const BINS_PER_DECADE = 10;

/**
 * Histogram of `waits` on log-spaced bins (BINS_PER_DECADE per decade from MIN_WAIT_MS), each bin
 * with the share of all samples in it; empty bins are left out.
 */
export function logHistogram(waits) {
  const counts = new Map();
  for (const w of waits) {
    const k = Math.floor(Math.log10(Math.max(w, MIN_WAIT_MS) / MIN_WAIT_MS) * BINS_PER_DECADE + 1e-9);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  const edge = (k) => MIN_WAIT_MS * 10 ** (k / BINS_PER_DECADE);
  return [...counts.entries()]
    .sort(([a], [b]) => a - b)
    .map(([k, count]) => ({ lo: edge(k), hi: edge(k + 1), count, share: count / waits.length }));
}

/** Fixed digits, or '–' for a missing number. */
export const fixed = (n, digits) => (typeof n === 'number' && Number.isFinite(n) ? n.toFixed(digits) : '–');
/** A whole number with thousands separators. */
export const whole = (n) => (typeof n === 'number' && Number.isFinite(n) ? Math.round(n).toLocaleString('en') : '–');

/** The mean of a non-empty list of numbers. */
function meanOf(values) {
  return values.reduce((sum, value) => sum + value, 0) / values.length;
}
