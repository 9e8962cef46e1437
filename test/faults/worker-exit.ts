/**
 * Ends a worker process once what it wrote to stdout and stderr has gone out. `process.exit` drops
 * what a pipe has not taken yet, which would lose the last events of its history.
 */
export function exitWhenFlushed(code: number): void {
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}
