// The page docs/benchmarks.md: what each chart shows, the figures behind it as tables, the machine
// and how to draw it again. Pure: results in, Markdown out.
import { backendLabel, contentionRows, fixed, httpMeans, httpRows, throughputRows, whole } from './results.mjs';

const gib = (bytes) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
const cell = (value) => String(value ?? '–').replaceAll('|', '\\|');

function table(header, rows) {
  return [
    `| ${header.map(cell).join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((row) => `| ${row.map(cell).join(' | ')} |`),
  ].join('\n');
}

const minutes = (seconds) =>
  seconds >= 90
    ? `${Math.floor(seconds / 60)} min ${String(Math.round(seconds % 60)).padStart(2, '0')} s`
    : `${seconds} s`;

/** One row per fact; a fact that differs between the runs lists each run's value. */
function machineTable(files) {
  const benches = Object.keys(files);
  const utc = (iso) => iso.replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  const row = (name, pick) => {
    const values = benches.map((b) => String(pick(files[b])));
    return [name, new Set(values).size === 1 ? values[0] : benches.map((b, i) => `${b}: ${values[i]}`).join('; ')];
  };
  const packages = [...new Set(benches.flatMap((b) => Object.keys(files[b].facts.packages)))];
  return table(
    ['', 'value'],
    [
      [
        'runs',
        benches
          .map((b) => `bench:${b} ${utc(files[b].facts.date)} → ${utc(files[b].finished.date).slice(11)}`)
          .join('; '),
      ],
      row('CPU (os.cpus())', (r) => `${r.facts.cpuModel} × ${r.facts.cpuCount}`),
      row('memory', (r) => gib(r.facts.totalMemoryBytes)),
      row('OS', (r) => r.facts.os),
      row('Node.js', (r) => r.facts.node),
      row('Redis (INFO server)', (r) => r.facts.redis ?? 'not reached'),
      row('PostgreSQL (SHOW server_version)', (r) => r.facts.postgres ?? 'not reached'),
      row('commit', (r) => r.facts.commit ?? '–'),
      row(
        'load average (1, 5, 15 min), start → end',
        (r) => `${r.facts.loadAverage.join(', ')} → ${r.finished.loadAverage.join(', ')}`,
      ),
      ...packages.map((p) => row(p, (r) => r.facts.packages[p] ?? '–')),
      row('--quick', (r) => (r.quick ? '**yes: not figures to quote**' : 'no')),
    ],
  );
}

function find(rows, bench, role, nth = 0) {
  return rows.filter((r) => r.bench === bench && r.role === role)[nth];
}

/** The few figures a reader wants first, each from this run, said without adjectives. */
function headline(files) {
  const lines = [];
  const contention = contentionRows(files);
  const redis = find(contention, 'redis', 'library');
  if (redis) {
    const anchors = contention.filter((r) => r.bench === 'redis' && r.role === 'anchor');
    lines.push(
      `Redis, contended: this library kept the lock in use **${fixed(redis.utilisation * 100, 1)}%** of the time ` +
        `with a p99 wait of **${fixed(redis.p99, 1)} ms** (max ${fixed(redis.max, 1)} ms); ` +
        anchors
          .map(
            (a) => `${a.name} ${fixed(a.utilisation * 100, 1)}%, p99 ${fixed(a.p99, 1)} ms (max ${fixed(a.max, 1)} ms)`,
          )
          .join('; ') +
        '.',
    );
  }
  const pg = find(contention, 'postgres', 'library');
  if (pg) {
    const others = contention.filter((r) => r.bench === 'postgres' && r.role !== 'library');
    lines.push(
      `PostgreSQL, contended: ${pg.name} **${fixed(pg.utilisation * 100, 1)}%**, p99 **${fixed(pg.p99, 1)} ms**; ` +
        others.map((a) => `${a.name} ${fixed(a.utilisation * 100, 1)}%, p99 ${fixed(a.p99, 1)} ms`).join('; ') +
        '.',
    );
  }
  const tp = throughputRows(files);
  const seq = find(tp, 'redis', 'library');
  const par = tp.find((r) => r.bench === 'redis' && r.role === 'library' && r.concurrency > 1);
  if (seq && par) {
    lines.push(
      `Redis, uncontended: ${whole(seq.opsPerSecond)} acquire + release per second one at a time ` +
        `(${fixed(seq.referenceRatio, 2)}× the raw ioredis floor), ${whole(par.opsPerSecond)}/s with ` +
        `${par.concurrency} in flight (${fixed(par.referenceRatio, 2)}×).`,
    );
  }
  const means = httpMeans(httpRows(files));
  if (means.length) {
    lines.push(
      `HTTP: a route with \`@WithLock\` served ` +
        means
          .map(
            (m) =>
              `${fixed(m.ratio, 3)}× the requests per second of its baseline on the ${m.backend === 'redis' ? 'Redis' : m.backend} backend`,
          )
          .join(' and ') +
        ` (mean of ${means[0].rounds} rounds).`,
    );
  }
  return lines.map((l) => `- ${l}`).join('\n');
}

function contentionTable(files) {
  return table(
    [
      'server',
      'lock',
      'kind',
      'utilisation',
      'acquisitions/s',
      'p50 wait ms',
      'p99 wait ms',
      'max wait ms',
      'Jain fairness',
      'overlaps',
    ],
    contentionRows(files).map((r) => [
      r.backend,
      r.name,
      r.roleLabel,
      fixed(r.utilisation, 3),
      whole(r.acquisitionsPerSecond),
      fixed(r.p50, 2),
      fixed(r.p99, 2),
      fixed(r.max, 1),
      fixed(r.fairness, 3),
      r.overlaps,
    ]),
  );
}

function throughputTable(files) {
  return table(
    ['server', 'in flight', 'lock', 'kind', 'ops/s', 'ratio', 'runs (ops/s)'],
    throughputRows(files).map((r) => [
      r.backend,
      r.concurrency,
      r.name,
      r.roleLabel,
      whole(r.opsPerSecond),
      r.referenceRatio === undefined || r.reference === r.name ? '–' : `${fixed(r.referenceRatio, 2)}× ${r.reference}`,
      r.rounds ? r.rounds.map(whole).join(', ') : '1 run',
    ]),
  );
}

function httpTable(files) {
  const rows = httpRows(files);
  const means = httpMeans(rows);
  return table(
    [
      'backend',
      'round',
      'baseline',
      'baseline req/s',
      'scripts only req/s (ratio)',
      '@WithLock req/s',
      'ratio',
      'p99 latency ms (baseline / @WithLock)',
    ],
    [
      ...rows.map((r) => [
        r.backend,
        r.round,
        r.baseline,
        whole(r.baselineRps),
        r.scriptsRps === undefined ? '–' : `${whole(r.scriptsRps)} (${fixed(r.scriptsRatio, 3)})`,
        whole(r.lockedRps),
        fixed(r.ratio, 3),
        `${r.baselineP99} / ${r.lockedP99}`,
      ]),
      ...means.map((m) => [
        m.backend,
        'mean',
        '',
        '',
        m.scriptsRatio === undefined ? '' : `(${fixed(m.scriptsRatio, 3)})`,
        '',
        `**${fixed(m.ratio, 3)}**`,
        '',
      ]),
    ],
  );
}

function manyHeldTable(files) {
  const many = files.redis?.manyHeld;
  if (!many) return '';
  const m = files.redis.settings.manyHeld;
  return [
    `### Redis: ${whole(m.count)} locks held at once`,
    '',
    `\`withLock\` on ${whole(m.count)} keys at once (ttl ${m.ttl / 1000} s, held ${m.holdMs / 1000} s) while the ` +
      'watchdog renews every lease in batches (one pipelined round trip per tick):',
    '',
    table(
      ['measure', 'value'],
      Object.entries(many).map(([k, v]) => [k, typeof v === 'number' ? v.toLocaleString('en') : v]),
    ),
    '',
  ].join('\n');
}

function perCallTable(files) {
  const rows = files.memory?.perCall;
  if (!rows) return '';
  return [
    '### Memory backend: cost per call',
    '',
    `Sequential calls on 10 keys, median of 5 rounds of ${whole(files.memory.settings.callsPerRound)} calls after a warm-up round:`,
    '',
    table(
      ['call', 'µs per call (median)', 'rounds (µs)'],
      rows.map((r) => [r.name, fixed(r.medianUs, 2), r.roundsUs.map((u) => fixed(u, 2)).join(', ')]),
    ),
    '',
  ].join('\n');
}

/** How to read the wait chart, with this run's figures for the fair reference. */
function waitsReading(files) {
  const c = (files.redis ?? files.postgres ?? files.memory)?.settings?.contention;
  const ceiling =
    contentionRows(files).find((r) => r.bench === 'memory' && r.role === 'ceiling') ??
    contentionRows(files).find((r) => r.role === 'ceiling');
  if (!c) return '';
  return (
    `With ${c.workers} workers and a hold of ${c.holdMs} ms, a fair lock with a prompt hand-off makes every waiter ` +
    `wait about ${c.workers - 1} holds, less its think time` +
    (ceiling
      ? ` (the ${ceiling.name} in this run: p50 ${fixed(ceiling.p50, 1)} ms, p99 ${fixed(ceiling.p99, 1)} ms)`
      : '') +
    '; a lock whose waiters poll lets a waiter in at once when it happens to ask while the lock is free, and leaves ' +
    'others waiting several polling intervals: a low p50 and a long p99 and max.'
  );
}

function image(charts, name, alt) {
  const path = charts.find((c) => c.endsWith(`/${name}.svg`));
  return path ? `![${alt}](${path})\n` : '';
}

function timingsLine(timings) {
  const parts = ['memory', 'redis', 'postgres', 'http'].filter((b) => timings[b] !== undefined);
  if (parts.length === 0) return '';
  const each = parts.map((b) => `bench:${b} ${minutes(timings[b])}`).join(', ');
  return timings.total !== undefined
    ? `The run behind this page took ${minutes(timings.total)} (${each}), compiling included. `
    : `The benchmarks behind this page took ${each}, compiling included. `;
}

/** The whole page. `charts` are the chart paths relative to the page, `dataDir` the JSON's. */
export function benchmarksPage(files, { charts, dataDir, timings }) {
  const runs = Object.values(files);
  const first = runs[0].facts;
  const days = [...new Set(runs.map((r) => r.facts.date.slice(0, 10)))].sort();
  const quick = runs.some((r) => r.quick);
  const c = (files.redis ?? files.postgres ?? files.memory)?.settings?.contention;
  const contended = c
    ? `${c.workers} workers in one process take turns on one key: each takes the lock, holds it ${c.holdMs} ms, ` +
      `gives it back and thinks ${c.thinkMs} ms, for ${c.durationMs / 1000} s per lock`
    : '';
  const servers = ['redis', 'postgres']
    .filter((b) => files[b])
    .map((b) => backendLabel(b, files))
    .join(' and ');
  return `# Benchmarks

<!-- Written by \`npm run bench:report\` from the JSON files in ${dataDir}/. Change scripts/bench-report/ rather than this page. -->

${quick ? '> **QUICK RUN (`--quick`): every run was shortened. These figures are for trying the scripts, not for quoting.**\n\n' : ''}The charts and tables below come from the benchmark scripts in [\`bench/\`](../bench) (\`npm run bench:memory\`,
\`bench:redis\`, \`bench:postgres\`, \`bench:http\`), run by \`npm run bench:report\` on ${days.join(' to ')} on
**one shared machine with ${first.cpuCount} cores** (${first.cpuModel}, ${gib(first.totalMemoryBytes)}) on which other work may run
at the same time (the load average at each script's start and end is in the table of runs below)${servers ? `; ${servers} ran on the same machine, over loopback` : ''}. It is one run, not a series: read
the figures as how the locks compare with each other in the same run (the scripts interleave the candidates
where they can, so that load from other work falls on all of them alike), not as what your hardware will do.
[Regenerate them](#regenerating) on yours.

In this run:

${headline(files)}

## Contended utilisation

${image(charts, 'contended-utilisation', 'Contended utilisation of each lock, by server')}
${contended}. Utilisation is the share of the run during which some worker was inside the lock; what is missing
is the time between one holder's release and the next holder's entry. A lock that hands the key to the next waiter
loses about a round trip there; one whose waiters poll loses up to its polling interval (run with their defaults,
redlock retries every 200 ms ± 100 ms, redis-semaphore every 10 ms; the PostgreSQL floor every 1 ms). The ceilings show
what the harness reaches with no network at all (a FIFO mutex in the process) and what PostgreSQL reaches when
the server wakes the next waiter itself (session advisory locks on 8 dedicated connections). The raw ioredis floor
has no waiting (it retries on the next tick), so it is measured uncontended only.

## Contended wait: p99 and max

${image(charts, 'contended-waits', 'p50, p99 and max wait of each lock, log scale')}
The same runs, from the waiter's side: how long a worker waited from asking for the lock to holding it. ${waitsReading(files)} Jain's fairness index (1 = every worker got the lock
equally often) and the overlaps (entries while another worker was inside: must be 0) are in the table.

${contentionTable(files)}

## Wait-time distribution

${['redis', 'postgres', 'memory']
  .map((b) => image(charts, `wait-distribution-${b}`, `Distribution of wait times, ${backendLabel(b, files)}`))
  .filter(Boolean)
  .join('\n')}
Every wait of the contended runs above, binned on a log scale (10 bins per decade); the red line marks the p99.
A FIFO hand-off gives one narrow peak near (workers − 1) × hold; polling gives a spread from near zero (the
retry came just as the lock was free) to several polling intervals. The raw samples, in the order the workers
entered, are in \`${dataDir}/<bench>.json\` under \`contention[].waits\`.

## Uncontended throughput

${image(charts, 'uncontended-throughput', 'Acquire + release per second of each lock, uncontended')}
Acquire + release cycles per second when nobody waits (every call on a key of its own), one at a time and many
in flight: the cost of the lock itself, against the floor of each server (the least any lock there costs:
\`SET NX PX\` plus a compare-and-delete script from bare ioredis; the backend's own lock statements from a bare
\`pg\` pool). advisory-lock opens a new PostgreSQL connection for every \`lock()\` and closes it on unlock.

${throughputTable(files)}

## HTTP overhead of \`@WithLock\`

${image(charts, 'http-requests', 'Requests per second of each route, per round')}
${image(charts, 'http-ratio', '@WithLock requests per second as a ratio of the baseline, per round')}
An Express app serves each route with autocannon on loopback, every request on a key of its own (no
contention: the cost of the lock). The memory backend's route with \`@WithLock\` is compared with the same route
without a lock; the Redis backend's with a route that makes the same two round trips with bare ioredis (\`SET NX
PX\`, then \`DEL\`), the floor of any Redis lock. A third Redis route, "scripts only", runs this library's two
scripts (acquire, release) through bare ioredis with none of the library's code in the process: the gap between it
and the floor is what the scripts cost the Redis server, the gap between it and \`@WithLock\` is the library's own
cost in the app. The routes of a backend alternate in order from round to round. The load generator, the app and
Redis share the same 2 cores, so rounds vary with whatever else the machine runs, on a busy one by a few tens
of percent from one round to the next: compare the routes within a round, and the means.

${httpTable(files)}

## Other figures from the same run

${manyHeldTable(files)}
${perCallTable(files)}
## The machine and the versions

${machineTable(files)}

## Regenerating

\`\`\`
npm run bench:report                               # runs all four benchmarks, then writes this page and its charts
npm run bench:report -- --from docs/benchmarks/data   # redraws the charts and this page from saved results, runs nothing
npm run bench:report -- --only redis,http          # reruns these, keeps the others' saved results
npm run bench:report -- --quick                    # shortened runs for trying a change, written to reports/bench-quick/
npm run bench:redis -- --json /tmp/redis.json      # any one benchmark: its tables, and its results as JSON
\`\`\`

${timingsLine(timings)}Run it on an otherwise idle machine for figures worth comparing across runs, and run it
more than once: on ${first.cpuCount} cores shared with other work, single runs of the same code differ by several
percent (the README quotes ranges over several runs). Each JSON file holds the machine facts above (CPU from
\`os.cpus()\`, memory, Node.js, \`INFO server\` of Redis, \`SHOW server_version\` of PostgreSQL, the version of
this package and of every package it is compared with, the commit and the date), the settings of the run and
every figure of its tables, the wait samples included.
`;
}
