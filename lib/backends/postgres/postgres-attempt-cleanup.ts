import { BackgroundWork } from '../../background-work';

/** Releases after a failed attempt, run in the background and awaited by the backend's `close()`. */
export class PostgresAttemptCleanup {
  private readonly cleanups = new BackgroundWork();

  constructor(
    private readonly release: (key: string, token: string) => Promise<boolean>,
    private readonly isClosed: () => boolean,
  ) {}

  /** Gives back, in the background, whatever a failed attempt may have granted or queued. */
  afterFailure(key: string, token: string): void {
    if (this.isClosed()) return;
    this.cleanups.run(this.release(key, token));
  }

  /** Resolves once the cleanups running now have settled, or after `ms`, whichever comes first. */
  settle(ms: number): Promise<void> {
    return this.cleanups.settle(ms);
  }
}
