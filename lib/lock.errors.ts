/**
 * Every error this library throws is a `LockError`, so one `instanceof` check catches them all;
 * each failure has its own subclass so that "busy", "lost" and "backend down" are never confused.
 */
export class LockError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The lock stayed busy for the whole wait. In an HTTP handler this answers 409 Conflict. */
export class LockTimeoutError extends LockError {
  /** The key as the caller gave it (without the module's key prefix). */
  readonly key: string;
  /** How long the caller asked to wait, in milliseconds (the message names it). */
  readonly wait: number;
  /** How long the caller waited, in milliseconds, as measured: at least `wait`, more on a slow backend. */
  readonly waited: number;
  /**
   * The time left on the holder's lease when the wait ended, in milliseconds, when the backend told
   * it (HTTP answers carry it as `Retry-After`). The holder may release sooner, or extend.
   */
  readonly retryIn: number | undefined;

  /** `wait` defaults to `waited`, rounded. */
  constructor(key: string, waited: number, retryIn?: number, wait: number = Math.round(waited)) {
    super(`Lock "${key}" is busy: not acquired within ${wait} ms`);
    this.key = key;
    this.wait = wait;
    this.waited = waited;
    this.retryIn = retryIn;
  }
}

/**
 * The lease could not be confirmed while work ran under it: an extension was refused (the lease
 * expired or was taken over) or none was confirmed before the holder's local deadline.
 * The work did not run exclusively from that moment on.
 */
export class LockLostError extends LockError {
  readonly key: string;
  /** What happened to the lease, without the key and the outcome of the work. */
  readonly detail: string;
  /**
   * Whether the work itself finished without throwing. `undefined` on the signal's reason,
   * which is raised while the work still runs.
   */
  readonly workSucceeded: boolean | undefined;

  constructor(key: string, detail: string, options?: { workSucceeded?: boolean; cause?: unknown }) {
    const outcome =
      options?.workSucceeded === undefined
        ? ''
        : options.workSucceeded
          ? '; the work itself completed, but not exclusively'
          : '; the work itself failed too (see cause)';
    super(`Lock "${key}" was lost: ${detail}${outcome}`, { cause: options?.cause });
    this.key = key;
    this.detail = detail;
    this.workSucceeded = options?.workSucceeded;
  }
}

/** The backend failed (down, timed out, refused). In an HTTP handler this answers 503. */
export class LockBackendError extends LockError {
  /** The backend's name: 'memory', 'redis', 'postgres' or a third party's. */
  readonly backend: string;

  constructor(backend: string, message: string, options?: { cause?: unknown }) {
    super(`Lock backend ${backend} failed: ${message}`, options);
    this.backend = backend;
  }
}

/** A key, TTL, wait, guard or option is not valid. The message says what was given and what is allowed. */
export class InvalidLockOptionsError extends LockError {}

/**
 * An optional peer dependency that the chosen feature needs is not installed (`pg` for
 * `postgresBackend`, `ioredis` for `redisBackend`, `fast-check` for the kit's model test). Thrown
 * when the feature is set up, never when the package is imported; the message names the package
 * and the command that installs it. An `InvalidLockOptionsError`: the app's setup asks for what this
 * install cannot do, which no retry mends (unlike a `LockBackendError`, which says "try again").
 */
export class MissingPeerDependencyError extends InvalidLockOptionsError {
  /**
   * @param packageName the package to install, such as 'pg'
   * @param installCommand the command that installs it, such as 'npm install pg'
   * @param neededBy what needs it, with its verb: 'postgresBackend needs'
   * @param version the major version needed, when it matters
   */
  constructor(
    readonly packageName: string,
    readonly installCommand: string,
    neededBy: string,
    version?: string,
    options?: { cause?: unknown },
  ) {
    super(
      `${neededBy} the "${packageName}" package${version === undefined ? '' : ` (version ${version})`}, an optional peer ` +
        `dependency that is not installed: run \`${installCommand}\``,
      options,
    );
  }
}

/** The message of a thrown value, whatever was thrown. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
