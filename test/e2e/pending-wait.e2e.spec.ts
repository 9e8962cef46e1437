import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

describe('a pending wait on the memory backend', () => {
  it('keeps the process alive until it settles, when it has a deadline', async () => {
    const script = join(__dirname, 'processes/pending-acquire.process.ts');
    const { stdout } = await run(
      process.execPath,
      ['-r', join(__dirname, '../support/transpile-on-require.js'), script, '400'],
      { timeout: 20_000 },
    );
    const lines = stdout.trim().split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    const result = JSON.parse(lines[0]) as { outcome: string; waited: number };
    expect(result.outcome).toBe('LockTimeoutError');
    expect(result.waited).toBeGreaterThanOrEqual(400);
  });
});
