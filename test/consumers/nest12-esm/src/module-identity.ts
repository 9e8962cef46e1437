import * as common from '@nestjs/common';
import * as core from '@nestjs/core';
import { createRequire } from 'node:module';
import { DistributedLock, LockModule } from 'nestjs-distributed-lock';

const require = createRequire(import.meta.url);

/**
 * This app imports the library (CommonJS) and Nest 12 (ES modules); the library requires Nest with
 * require(esm). Each class must exist once: Nest resolves providers by class.
 */
export function moduleIdentity(injected: unknown): Record<string, boolean> {
  const fromLibrary = createRequire(require.resolve('nestjs-distributed-lock'));
  return {
    requireAndImportSameLibrary: require('nestjs-distributed-lock').DistributedLock === DistributedLock,
    injectedIsTheImportedClass: injected instanceof DistributedLock,
    libraryModuleIsTheImportedOne: require('nestjs-distributed-lock').LockModule === LockModule,
    librarySeesTheAppsNestCommon: fromLibrary('@nestjs/common').Injectable === common.Injectable,
    librarySeesTheAppsNestCore: fromLibrary('@nestjs/core').APP_FILTER === core.APP_FILTER,
  };
}
