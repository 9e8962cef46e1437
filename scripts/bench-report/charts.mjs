// Vega-Lite specs of the benchmark charts, built from the rows of results.mjs. Pure: data in, specs out.
// Every chart carries its title and, under it, what was measured and the facts of the runs it shows.
import {
  ROLES,
  backendLabel,
  contentionRows,
  factsLines,
  fixed,
  httpMeans,
  httpRows,
  logHistogram,
  throughputRows,
  whole,
} from './results.mjs';

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';
const FONT = 'Helvetica, Arial, sans-serif';
const PLOT_WIDTH = 460;

const CONFIG = {
  font: FONT,
  background: 'white',
  padding: 12,
  title: {
    anchor: 'start',
    fontSize: 15,
    fontWeight: 'bold',
    subtitleFontSize: 11,
    subtitleColor: '#444',
    subtitlePadding: 6,
    subtitleLineHeight: 15,
    offset: 16,
  },
  axis: { labelFontSize: 11, titleFontSize: 11, titleFontWeight: 'normal', labelLimit: 360, titleColor: '#333' },
  header: { labelFontSize: 12, labelFontWeight: 'bold', labelColor: '#222' },
  legend: { labelFontSize: 11, titleFontSize: 11, labelLimit: 360, orient: 'bottom', direction: 'horizontal' },
  view: { stroke: '#ddd' },
};

/** The title block: what the chart shows, then how it was measured, then the facts of the runs. */
function title(text, what, runs) {
  return { text, subtitle: [...what, ...factsLines(runs)] };
}

/** The colour scale of roles, with only the roles present (so the legend lists no absent kinds). */
function roleColor(rows) {
  const present = ROLES.filter((r) => rows.some((row) => row.role === r.role));
  return {
    field: 'roleLabel',
    type: 'nominal',
    title: null,
    scale: { domain: present.map((r) => r.label), range: present.map((r) => r.color) },
    legend: { title: null, orient: 'bottom', columns: 3, symbolType: 'square' },
  };
}

/** Facet rows, one per backend, with the label on top at the left. */
function rowHeader(field, sort) {
  return {
    field,
    type: 'nominal',
    sort,
    title: null,
    header: { labelAngle: 0, labelOrient: 'top', labelAnchor: 'start', labelAlign: 'left', labelPadding: 6 },
  };
}

const runsOf = (files, benches) => benches.map((b) => files[b]).filter(Boolean);

function contentionWhat(files) {
  const file = files.redis ?? files.postgres ?? files.memory;
  const c = file?.settings?.contention ?? { workers: 8, holdMs: 2, thinkMs: 1, durationMs: 5_000 };
  return `${c.workers} workers in one process on one key, each holding the lock ${c.holdMs} ms and thinking ${c.thinkMs} ms, ${c.durationMs / 1000} s per lock`;
}

const nameAxis = { field: 'name', type: 'nominal', sort: { field: 'order', op: 'min' }, title: null };

/** (a) Contended utilisation: the share of the run during which some worker held the lock. */
export function utilisationChart(files) {
  const rows = contentionRows(files).map((row) => ({
    ...row,
    waits: undefined,
    label: `${fixed(row.utilisation, 3)}  (${whole(row.acquisitionsPerSecond)} acq/s)`,
  }));
  const panels = [...new Set(rows.map((r) => r.backend))];
  return {
    $schema: SCHEMA,
    config: CONFIG,
    title: title(
      'Contended utilisation: how much of the time the lock was in use',
      [
        `${contentionWhat(files)}. 100% = the lock was never idle while someone waited for it.`,
        'The Redis floor (SET NX PX, retried on the next tick) has no waiting and is not a contended lock; it appears in the throughput chart.',
      ],
      runsOf(files, ['redis', 'postgres', 'memory']),
    ),
    data: { values: rows },
    facet: { row: rowHeader('backend', panels) },
    spec: {
      width: PLOT_WIDTH,
      height: { step: 24 },
      layer: [
        {
          mark: { type: 'bar', height: { band: 0.7 } },
          encoding: {
            y: nameAxis,
            x: {
              field: 'utilisation',
              type: 'quantitative',
              scale: { domain: [0, 1] },
              axis: { format: '.0%', title: 'utilisation (share of the run some worker was inside the lock)' },
            },
            color: roleColor(rows),
          },
        },
        {
          mark: { type: 'text', align: 'left', dx: 4, fontSize: 11, color: '#222' },
          encoding: { y: nameAxis, x: { field: 'utilisation', type: 'quantitative' }, text: { field: 'label' } },
        },
      ],
    },
    resolve: { scale: { y: 'independent' } },
  };
}

/** A log-scale domain from the nearest power of ten below `lo` to the one above `hi`. */
function logDomain(lo, hi) {
  return [10 ** Math.floor(Math.log10(lo) + 1e-9), 10 ** Math.ceil(Math.log10(hi) - 1e-9)];
}

/** A log axis in ms with a tick and a grid line at each power of ten, labelled 0.01, 0.1, 1, 10, 100, 1,000. */
function logMsAxis(domain, title) {
  const values = [];
  for (let v = domain[0]; v <= domain[1] * 1.001; v *= 10) values.push(Number(v.toPrecision(1)));
  return { title, values, format: ',~g', grid: true };
}

/** Thousands as k and millions as M, with a plain 0 (d3's ~s writes 0k). */
const SI_LABELS = { format: '~s', labelExpr: "datum.value === 0 ? '0' : datum.label" };

/** (b) p50, p99 and max wait of each lock, on a log axis, with p99 and max written beside. */
export function waitsChart(files) {
  const rows = contentionRows(files).map((row) => ({
    ...row,
    waits: undefined,
    label: `p99 ${fixed(row.p99, 1)} · max ${fixed(row.max, 1)} ms`,
  }));
  const panels = [...new Set(rows.map((r) => r.backend))];
  const lo = Math.max(0.01, Math.min(...rows.map((r) => r.p50)));
  const hi = Math.max(...rows.map((r) => r.max));
  const domain = logDomain(lo / 1.5, hi * 1.5);
  const x = (field) => ({
    field,
    type: 'quantitative',
    scale: { type: 'log', domain, clamp: true },
    axis: logMsAxis(domain, 'wait from asking for the lock to holding it (ms, log scale)'),
  });
  return {
    $schema: SCHEMA,
    config: CONFIG,
    title: title(
      'Contended wait: p99 and max (p50 for reference)',
      [
        `${contentionWhat(files)}. Each line runs from the median wait to the longest.`,
        'Shorter is better: a waiter of a fair, promptly handed-off lock waits about (workers − 1) × hold.',
      ],
      runsOf(files, ['redis', 'postgres', 'memory']),
    ),
    data: { values: rows },
    facet: { row: rowHeader('backend', panels) },
    spec: {
      width: PLOT_WIDTH,
      height: { step: 26 },
      layer: [
        {
          mark: { type: 'rule', strokeWidth: 2, opacity: 0.6 },
          encoding: { y: nameAxis, x: x('p50'), x2: { field: 'max' }, color: roleColor(rows) },
        },
        {
          transform: [
            { fold: ['p50', 'p99', 'max'], as: ['statistic', 'ms'] },
            { calculate: "datum.statistic === 'p50' ? 'p50 (median)' : datum.statistic", as: 'statistic' },
          ],
          mark: { type: 'point', filled: true, size: 70, opacity: 1 },
          encoding: {
            y: nameAxis,
            x: x('ms'),
            color: roleColor(rows),
            shape: {
              field: 'statistic',
              type: 'nominal',
              title: null,
              scale: { domain: ['p50 (median)', 'p99', 'max'], range: ['circle', 'diamond', 'triangle-right'] },
              legend: { title: null, orient: 'bottom' },
            },
          },
        },
        {
          // The figures in a column of their own right of the plot, so they never cross the marks.
          mark: { type: 'text', align: 'left', fontSize: 11, color: '#222' },
          encoding: { y: nameAxis, x: { value: PLOT_WIDTH + 12 }, text: { field: 'label' } },
        },
      ],
    },
    resolve: { scale: { y: 'independent' } },
  };
}

/**
 * (c) The distribution of waits of one backend's locks: a histogram on log-spaced bins per lock,
 * with the p99 marked. One chart per backend (`bench`), since each has its own set of locks.
 */
export function waitDistributionChart(files, bench) {
  const rows = contentionRows(files).filter((r) => r.bench === bench);
  if (rows.length === 0) return undefined;
  const values = [];
  for (const row of rows) {
    const base = { name: row.name, order: row.order, role: row.role, roleLabel: row.roleLabel };
    for (const bin of logHistogram(row.waits)) values.push({ ...base, kind: 'bin', ...bin });
    values.push({ ...base, kind: 'p99', p99: row.p99, label: `p99 ${fixed(row.p99, 1)} ms` });
  }
  const bins = values.filter((v) => v.kind === 'bin');
  const domain = logDomain(Math.min(...bins.map((b) => b.lo)), Math.max(...bins.map((b) => b.hi)));
  const x = {
    type: 'quantitative',
    scale: { type: 'log', domain },
    axis: logMsAxis(domain, 'wait (ms, log scale; 10 bins per decade)'),
  };
  const samples = rows.map((r) => r.waits.length);
  return {
    $schema: SCHEMA,
    config: { ...CONFIG, view: { stroke: '#ddd' } },
    title: title(
      `Wait-time distribution, ${backendLabel(bench, files)}`,
      [
        `${contentionWhat(files)}.`,
        `Every wait of the run; a bar's height is the share of that lock's acquisitions that waited that long ` +
          `(${whole(Math.min(...samples))} to ${whole(Math.max(...samples))} acquisitions per lock). The red line is the p99.`,
      ],
      runsOf(files, [bench]),
    ),
    data: { values },
    facet: { row: rowHeader('name', { field: 'order', op: 'min' }) },
    spec: {
      width: PLOT_WIDTH + 80,
      height: 52,
      layer: [
        {
          transform: [{ filter: "datum.kind === 'bin'" }],
          mark: { type: 'rect', stroke: 'white', strokeWidth: 0.5 },
          encoding: {
            x: { ...x, field: 'lo' },
            x2: { field: 'hi' },
            y: { field: 'share', type: 'quantitative', title: null, axis: { format: '.0%', tickCount: 2 } },
            y2: { datum: 0 },
            color: roleColor(rows),
          },
        },
        {
          transform: [{ filter: "datum.kind === 'p99'" }],
          mark: { type: 'rule', color: '#c0392b', strokeDash: [4, 3], strokeWidth: 1.5 },
          encoding: { x: { ...x, field: 'p99' } },
        },
        {
          transform: [{ filter: "datum.kind === 'p99'" }],
          mark: { type: 'text', align: 'left', baseline: 'top', dx: 4, y: 2, fontSize: 10, color: '#c0392b' },
          encoding: { x: { ...x, field: 'p99' }, text: { field: 'label' } },
        },
      ],
    },
    resolve: { scale: { y: 'shared' } },
  };
}

/** (e) Uncontended acquire + release per second, each key its own, 1 and many in flight. */
export function throughputChart(files) {
  const rows = throughputRows(files).map((r) => ({
    ...r,
    label:
      `${whole(r.opsPerSecond)}/s` +
      (r.referenceRatio !== undefined && r.role !== 'floor' && r.role !== 'ceiling'
        ? `  (${fixed(r.referenceRatio, 2)}× ${r.bench === 'memory' ? 'ceiling' : 'floor'})`
        : ''),
  }));
  const panels = [...new Set(rows.map((r) => r.panel))];
  const x = {
    field: 'opsPerSecond',
    type: 'quantitative',
    axis: { title: 'acquire + release per second', ...SI_LABELS },
  };
  return {
    $schema: SCHEMA,
    config: CONFIG,
    title: title(
      'Uncontended throughput: acquire + release per second',
      [
        'Every call on a key of its own, so nobody waits: the cost of the lock itself. Redis: median of interleaved rounds;',
        'PostgreSQL: mean of two runs in mirrored order; memory: against a FIFO mutex in the same process (the ceiling).',
      ],
      runsOf(files, ['redis', 'postgres', 'memory']),
    ),
    data: { values: rows },
    facet: { row: rowHeader('panel', panels) },
    spec: {
      width: PLOT_WIDTH,
      height: { step: 22 },
      layer: [
        { mark: { type: 'bar', height: { band: 0.7 } }, encoding: { y: nameAxis, x, color: roleColor(rows) } },
        {
          mark: { type: 'text', align: 'left', dx: 4, fontSize: 11, color: '#222' },
          encoding: { y: nameAxis, x, text: { field: 'label' } },
        },
      ],
    },
    resolve: { scale: { y: 'independent', x: 'independent' } },
  };
}

function httpWhat(files) {
  const s = files.http?.settings ?? {};
  return (
    `Express route, autocannon on loopback, ${s.connections} connections, ${s.seconds} s per route and round, ` +
    `${s.rounds} rounds, the two routes in alternating order; every request locks a key of its own.`
  );
}

const HTTP_PANELS = {
  memory: 'memory backend: @WithLock against the same route without a lock',
  redis: 'Redis backend: @WithLock against bare ioredis making the same two round trips',
};

/** (d) Requests per second of each route in every round of the HTTP benchmark. */
export function httpRequestsChart(files) {
  const rows = httpRows(files);
  if (rows.length === 0) return undefined;
  const values = rows.flatMap((r) => [
    { panel: HTTP_PANELS[r.backend] ?? r.backend, round: r.round, route: 'baseline', rps: r.baselineRps },
    { panel: HTTP_PANELS[r.backend] ?? r.backend, round: r.round, route: '@WithLock', rps: r.lockedRps },
  ]);
  return {
    $schema: SCHEMA,
    config: CONFIG,
    title: title(
      'HTTP: requests per second of each route, per round',
      [httpWhat(files), 'Baseline: the route without a lock (memory) or with bare ioredis SET NX PX + DEL (Redis).'],
      runsOf(files, ['http']),
    ),
    data: { values },
    facet: { row: rowHeader('panel', Object.values(HTTP_PANELS)) },
    spec: {
      width: PLOT_WIDTH + 80,
      height: 150,
      layer: [
        {
          mark: { type: 'bar' },
          encoding: {
            x: { field: 'round', type: 'ordinal', axis: { title: 'round', labelAngle: 0 } },
            xOffset: { field: 'route', sort: ['baseline', '@WithLock'] },
            y: { field: 'rps', type: 'quantitative', axis: { title: 'requests/s', ...SI_LABELS } },
            color: {
              field: 'route',
              type: 'nominal',
              title: null,
              scale: { domain: ['baseline', '@WithLock'], range: ['#8c8c8c', '#1f5fa8'] },
              legend: { title: null, orient: 'bottom', symbolType: 'square' },
            },
          },
        },
      ],
    },
  };
}

/** (d) @WithLock's requests per second as a share of the baseline's, per round, with 1 and the 0.95 target. */
export function httpRatioChart(files) {
  const rows = httpRows(files);
  if (rows.length === 0) return undefined;
  const means = httpMeans(rows);
  const legendName = (backend) => {
    const mean = means.find((m) => m.backend === backend);
    return `${backend === 'memory' ? 'memory backend' : backend === 'redis' ? 'Redis backend' : backend} (mean ${fixed(mean?.ratio, 3)})`;
  };
  const values = rows.map((r) => ({ series: legendName(r.backend), round: r.round, ratio: r.ratio }));
  const lo = Math.min(0.9, ...rows.map((r) => r.ratio));
  const hi = Math.max(1.05, ...rows.map((r) => r.ratio));
  const y = {
    field: 'ratio',
    type: 'quantitative',
    scale: { domain: [Math.floor(lo * 20) / 20, Math.ceil(hi * 20) / 20] },
    axis: { title: '@WithLock req/s ÷ baseline req/s', format: '.2f' },
  };
  const references = [
    { ratio: 1, label: 'equal', dash: [] },
    { ratio: 0.95, label: 'target 0.95', dash: [5, 4] },
  ];
  return {
    $schema: SCHEMA,
    config: CONFIG,
    title: title(
      'HTTP: what @WithLock costs a route (ratio to its baseline, per round)',
      [
        httpWhat(files),
        'Above 1: the locked route served more than its baseline in that round (noise of a shared machine).',
      ],
      runsOf(files, ['http']),
    ),
    width: PLOT_WIDTH + 80,
    height: 220,
    layer: [
      {
        data: { values: references },
        mark: { type: 'rule', color: '#999' },
        encoding: {
          y: { ...y, field: 'ratio' },
          strokeDash: { field: 'dash', type: 'nominal', scale: null, legend: null },
        },
      },
      {
        data: { values: references },
        mark: {
          type: 'text',
          align: 'right',
          baseline: 'bottom',
          dy: -2,
          x: PLOT_WIDTH + 80,
          fontSize: 10,
          color: '#666',
        },
        encoding: { y: { ...y, field: 'ratio' }, text: { field: 'label' } },
      },
      {
        data: { values },
        mark: { type: 'line', point: { filled: true, size: 60 } },
        encoding: {
          x: { field: 'round', type: 'ordinal', axis: { title: 'round', labelAngle: 0 } },
          y,
          color: {
            field: 'series',
            type: 'nominal',
            title: null,
            scale: { domain: ['memory', 'redis'].map(legendName), range: ['#1f5fa8', '#7fb0e0'] },
            legend: { title: null, orient: 'bottom' },
          },
        },
      },
    ],
  };
}

/** Every chart of the report, by file name (without .svg); charts without data are left out. */
export function allCharts(files) {
  const charts = {
    'contended-utilisation': files.redis || files.postgres || files.memory ? utilisationChart(files) : undefined,
    'contended-waits': files.redis || files.postgres || files.memory ? waitsChart(files) : undefined,
    'wait-distribution-redis': waitDistributionChart(files, 'redis'),
    'wait-distribution-postgres': waitDistributionChart(files, 'postgres'),
    'wait-distribution-memory': waitDistributionChart(files, 'memory'),
    'uncontended-throughput': files.redis || files.postgres || files.memory ? throughputChart(files) : undefined,
    'http-requests': httpRequestsChart(files),
    'http-ratio': httpRatioChart(files),
  };
  return Object.fromEntries(Object.entries(charts).filter(([, spec]) => spec !== undefined));
}
