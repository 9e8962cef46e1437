import { MissingPeerDependencyError } from './lock.errors';

const loaded = new Map<string, unknown>();

/** What `loadOptionalPeer` needs to know besides the package's name. */
export interface OptionalPeer {
  /** What needs the package, with its verb, for the message: 'postgresBackend needs'. */
  neededBy: string;
  /**
   * The caller's own `() => require('<name>')`: a literal `require` that bundlers can see, then
   * resolve or mark external (a `require` of a variable defeats them).
   */
  load: () => unknown;
  /** The command that installs it. Default `npm install <name>`. */
  install?: string;
  /** The major version needed, for the message. */
  version?: string;
}

/**
 * Loads the optional peer dependency `name` once (later calls return the same module). Throws
 * `MissingPeerDependencyError`, naming the package and the command that installs it, when it
 * cannot be loaded.
 */
export function loadOptionalPeer<T>(name: string, peer: OptionalPeer): T {
  if (loaded.has(name)) return loaded.get(name) as T;
  let module: T;
  try {
    module = peer.load() as T;
  } catch (error) {
    throw new MissingPeerDependencyError(name, peer.install ?? `npm install ${name}`, peer.neededBy, peer.version, {
      cause: error,
    });
  }
  loaded.set(name, module);
  return module;
}
