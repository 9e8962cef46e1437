import type * as FastCheck from 'fast-check';

let loaded: typeof FastCheck | undefined;

/**
 * fast-check is an optional peer dependency of `nestjs-distributed-lock/testing` alone: it is loaded
 * when a case that needs it runs, never when the package (or the kit) is imported.
 */
export function loadFastCheck(): typeof FastCheck {
  if (!loaded) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      loaded = require('fast-check') as typeof FastCheck;
    } catch (error) {
      throw new Error(
        'nestjs-distributed-lock/testing: the model tests need the "fast-check" package (version 4), an optional peer ' +
          'dependency of the conformance kit: run `npm install --save-dev fast-check@4`',
        { cause: error },
      );
    }
  }
  return loaded;
}
