import type { LoggerService } from '@nestjs/common';

export interface LogEntry {
  level: 'log' | 'error' | 'warn' | 'debug' | 'verbose' | 'fatal';
  /** The message and the other arguments, as text (an Error as its stack). */
  text: string;
}

/** A Nest logger that keeps what the app logs, so a test can assert on the log of a real app. */
export class RecordingLogger implements LoggerService {
  readonly entries: LogEntry[] = [];

  log(...args: unknown[]): void {
    this.record('log', args);
  }
  error(...args: unknown[]): void {
    this.record('error', args);
  }
  warn(...args: unknown[]): void {
    this.record('warn', args);
  }
  debug(...args: unknown[]): void {
    this.record('debug', args);
  }
  verbose(...args: unknown[]): void {
    this.record('verbose', args);
  }
  fatal(...args: unknown[]): void {
    this.record('fatal', args);
  }

  /** Entries at `level`, optionally only those whose text matches. */
  at(level: LogEntry['level'], match?: RegExp): LogEntry[] {
    return this.entries.filter((e) => e.level === level && (match === undefined || match.test(e.text)));
  }

  /** Resolves once an entry at `level` matches, polling every 10 ms for at most `within` ms. */
  async waitFor(level: LogEntry['level'], match: RegExp, within = 5_000): Promise<LogEntry> {
    for (let waited = 0; waited <= within; waited += 10) {
      const [entry] = this.at(level, match);
      if (entry) return entry;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error(`no ${level} log entry matching ${match} within ${within} ms; got ${JSON.stringify(this.entries)}`);
  }

  private record(level: LogEntry['level'], args: unknown[]): void {
    const text = args
      .map((a) => (a instanceof Error ? (a.stack ?? a.message) : typeof a === 'string' ? a : JSON.stringify(a)))
      .join(' ');
    this.entries.push({ level, text });
  }
}
