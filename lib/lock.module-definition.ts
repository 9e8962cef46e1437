import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { LockModuleOptions } from './lock-module-options';

export const {
  ConfigurableModuleClass: ConfigurableLockModule,
  MODULE_OPTIONS_TOKEN: LOCK_MODULE_OPTIONS,
  OPTIONS_TYPE: LOCK_MODULE_OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE: LOCK_MODULE_ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<LockModuleOptions>({ moduleName: 'Lock' })
  .setClassMethodName('forRoot')
  .setFactoryMethodName('createLockOptions')
  // Options read when the module is defined, not from a factory: `isGlobal`, and `errorFilters`
  // (whether the module registers LockErrorFilter; LockModule adds its providers).
  .setExtras({ isGlobal: false, errorFilters: true }, (definition, extras) => ({
    ...definition,
    global: extras.isGlobal === true,
  }))
  .build();

/** A class for `forRootAsync({ useClass })` / `useExisting`: it returns the module's options. */
export interface LockOptionsFactory {
  createLockOptions(): LockModuleOptions | Promise<LockModuleOptions>;
}
