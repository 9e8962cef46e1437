/* eslint-disable @typescript-eslint/no-require-imports -- a CommonJS app: what require() returns is the point */
import * as common from '@nestjs/common';
import * as core from '@nestjs/core';
import { DistributedLock, LockModule } from 'nestjs-distributed-lock';

/** A CommonJS app: one module system, one copy of each class (checked all the same). */
export function moduleIdentity(injected: unknown): Record<string, boolean> {
  const fromLibrary = (name: string): any =>
    require(require.resolve(name, { paths: [require.resolve('nestjs-distributed-lock')] }));
  return {
    requireAndImportSameLibrary: require('nestjs-distributed-lock').DistributedLock === DistributedLock,
    injectedIsTheImportedClass: injected instanceof DistributedLock,
    libraryModuleIsTheImportedOne: require('nestjs-distributed-lock').LockModule === LockModule,
    librarySeesTheAppsNestCommon: fromLibrary('@nestjs/common').Injectable === common.Injectable,
    librarySeesTheAppsNestCore: fromLibrary('@nestjs/core').APP_FILTER === core.APP_FILTER,
  };
}
