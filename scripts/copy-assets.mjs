// Copies the SQL and Lua files the backends read at run time from lib/ to dist/, keeping their paths
// (tsc copies only what it compiles). Part of `npm run build`; the demo and the benchmarks, compiled
// elsewhere, pass where their copy of lib/ went (`node scripts/copy-assets.mjs .bench/lib`).
import { cpSync, readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const from = join(root, 'lib');
const to = join(root, process.argv[2] ?? 'dist');
let copied = 0;
for (const entry of readdirSync(from, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !/\.(sql|lua)$/.test(entry.name)) continue;
  const source = join(entry.parentPath, entry.name);
  cpSync(source, join(to, relative(from, source)));
  copied++;
}
console.log(`copied ${copied} SQL/Lua files to ${relative(root, to)}/`);
