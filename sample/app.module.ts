import { Module, type DynamicModule } from '@nestjs/common';
import { LockModule, type LockBackend } from '../lib';
import { CounterController } from './counter.controller';
import { CounterStore } from './counter.store';

/** The demo app: a counter API whose locked endpoints run on the given backend. */
@Module({})
export class AppModule {
  static register(backend?: LockBackend): DynamicModule {
    return {
      module: AppModule,
      imports: [LockModule.forRoot({ backend, keyPrefix: 'demo:' })],
      controllers: [CounterController],
      providers: [CounterStore],
    };
  }
}
