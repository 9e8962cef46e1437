/**
 * The highest fence a backend has seen, and what follows the token in its scripts' first argument:
 * the publish mode and that floor, so that every new fence the scripts draw is higher.
 */
export class RedisFenceFloor {
  /** How the acquire script publishes: "p" PUBLISH, "s" SPUBLISH. */
  private readonly acquireMode: 'p' | 's';
  /** How the release script publishes: as acquireMode; upper case also announces every release. */
  private readonly releaseMode: 'p' | 's' | 'P' | 'S';
  /** The highest fence this backend has seen: every new fence it asks for is higher. */
  private floor = 0;
  /** What follows the token in the scripts' first argument: the publish mode and the floor. */
  private acquireSuffix: string;
  private releaseSuffix: string;

  /** `sharded`: the scripts publish with SPUBLISH; `announceReleases`: every release is published. */
  constructor(sharded: boolean, announceReleases: boolean | undefined) {
    this.acquireMode = sharded ? 's' : 'p';
    this.releaseMode = announceReleases ? (this.acquireMode === 's' ? 'S' : 'P') : this.acquireMode;
    this.acquireSuffix = `${this.acquireMode}0`;
    this.releaseSuffix = `${this.releaseMode}0`;
  }

  /** What follows the token in the acquire script's first argument. */
  get acquire(): string {
    return this.acquireSuffix;
  }

  /** What follows the token in the release script's first argument. */
  get release(): string {
    return this.releaseSuffix;
  }

  /** Raises the floor to `fence` when it is higher. */
  observe(fence: number): void {
    if (fence > this.floor) {
      this.floor = fence;
      const floor = fence.toFixed(0);
      this.acquireSuffix = this.acquireMode + floor;
      this.releaseSuffix = this.releaseMode + floor;
    }
  }
}
