// `npm run bench:report`: runs the four benchmark scripts, each writing its results as JSON, then
// draws the charts (SVG, with vega-lite) and writes the page that explains them.
//
//   npm run bench:report                          run everything; writes docs/benchmarks.md,
//                                                 docs/benchmarks/*.svg and docs/benchmarks/data/*.json
//   npm run bench:report -- --from <dir>          no runs: redraw from the JSON files in <dir>
//                                                 (docs/benchmarks/data for the committed ones)
//   npm run bench:report -- --only redis,http     run only these; the others come from the data already there
//   npm run bench:report -- --quick               short runs, for trying a change; writes to reports/bench-quick/
//   npm run bench:report -- --out <dir>           write <dir>/benchmarks.md and <dir>/benchmarks/ instead
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import { allCharts } from './bench-report/charts.mjs';
import { benchmarksPage } from './bench-report/markdown.mjs';
import { BENCHES, loadResults } from './bench-report/results.mjs';
import { useHelveticaMetrics } from './bench-report/text-width.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    from: { type: 'string' },
    only: { type: 'string' },
    quick: { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
if (args.from && (args.only || args.quick))
  throw new Error('--from redraws saved results: it runs nothing, so takes no --only or --quick');

const out = resolve(args.out ?? join(root, args.quick ? 'reports/bench-quick' : 'docs'));
const chartsDir = join(out, 'benchmarks');
const dataDir = join(chartsDir, 'data');
const timingsFile = join(dataDir, 'timings.json');
mkdirSync(dataDir, { recursive: true });

/** Runs `npm run bench:<name> -- --json <dataDir>/<name>.json`, its tables going to this terminal. */
function runBench(name) {
  const started = performance.now();
  const result = spawnSync(
    'npm',
    [
      'run',
      '--silent',
      `bench:${name}`,
      '--',
      '--json',
      join(dataDir, `${name}.json`),
      ...(args.quick ? ['--quick'] : []),
    ],
    { cwd: root, stdio: 'inherit' },
  );
  if (result.status !== 0) throw new Error(`npm run bench:${name} failed (exit ${result.status ?? result.signal})`);
  return (performance.now() - started) / 1000;
}

if (!args.from) {
  const benches = args.only ? args.only.split(',').map((b) => b.trim()) : BENCHES;
  const unknown = benches.filter((b) => !BENCHES.includes(b));
  if (unknown.length)
    throw new Error(`--only: no benchmark named ${unknown.join(', ')} (there are ${BENCHES.join(', ')})`);
  const timings = existsSync(timingsFile) && args.only ? JSON.parse(readFileSync(timingsFile, 'utf8')) : {};
  const started = performance.now();
  for (const bench of benches) {
    console.log(`\n=== npm run bench:${bench}${args.quick ? ' (--quick)' : ''} ===\n`);
    timings[bench] = Math.round(runBench(bench));
  }
  if (!args.only) timings.total = Math.round((performance.now() - started) / 1000);
  else delete timings.total;
  writeFileSync(timingsFile, `${JSON.stringify(timings, null, 2)}\n`);
}

const source = resolve(args.from ?? dataDir);
const files = loadResults(source);
if (Object.keys(files).length === 0) throw new Error(`no results (memory.json, redis.json, …) in ${source}`);
if (source !== dataDir) {
  // The page points at its data: a redraw from elsewhere copies the files it drew from beside the charts.
  for (const bench of Object.keys(files)) copyFileSync(join(source, `${bench}.json`), join(dataDir, `${bench}.json`));
  if (existsSync(join(source, 'timings.json'))) copyFileSync(join(source, 'timings.json'), timingsFile);
}
const timings = existsSync(timingsFile) ? JSON.parse(readFileSync(timingsFile, 'utf8')) : {};

// Vega-Lite warns for every faceted chart with layers and independent scales that it assumes the layers
// share their data source; here they always do, so that one warning is left out.
const logger = {
  level() {
    return this;
  },
  error: (...message) => console.error('vega-lite:', ...message),
  warn: (...message) => {
    if (!String(message[0]).startsWith('Detected faceted independent scales')) console.warn('vega-lite:', ...message);
  },
  info: () => undefined,
  debug: () => undefined,
};

useHelveticaMetrics(vega);
const charts = allCharts(files);
for (const [name, spec] of Object.entries(charts)) {
  const compiled = vl.compile({ description: spec.title?.text, ...spec }, { logger }).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  writeFileSync(join(chartsDir, `${name}.svg`), await view.toSVG());
  view.finalize();
}
const page = join(out, 'benchmarks.md');
writeFileSync(
  page,
  benchmarksPage(files, {
    charts: Object.keys(charts).map((name) => `benchmarks/${name}.svg`),
    dataDir: relative(out, dataDir),
    timings,
  }),
);
console.log(
  `\nwrote ${relative(process.cwd(), page)} and ${Object.keys(charts).length} charts in ${relative(process.cwd(), chartsDir)}/`,
);
