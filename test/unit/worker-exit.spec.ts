import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const ROOT = join(__dirname, '..', '..');
const LINES = 3_000;

/**
 * A fault-suite worker prints its history on stdout and then exits; the checker must see every
 * line. A worker printing more than a pipe holds and ending with `process.exit` loses its last lines.
 */
describe('a fault-suite worker that ends', () => {
  it.each([0, 1])('with code %i leaves every line it printed to the reader', async (code) => {
    const script = [
      `for (let i = 0; i < ${LINES}; i++) process.stdout.write(JSON.stringify({ i, pad: 'x'.repeat(200) }) + '\\n');`,
      `require(${JSON.stringify(join(ROOT, 'test/faults/worker-exit.ts'))}).exitWhenFlushed(${code});`,
    ].join('\n');
    const child = spawn(process.execPath, ['-r', join(ROOT, 'test/support/transpile-on-require.js'), '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let last = -1;
    let lines = 0;
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines++;
      last = (JSON.parse(line) as { i: number }).i;
    });
    const exitCode = await new Promise<number | null>((resolve) => child.once('close', resolve));
    expect({ exitCode, lines, last }).toEqual({ exitCode: code, lines: LINES, last: LINES - 1 });
  });
});
