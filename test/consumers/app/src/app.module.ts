import { Module } from '@nestjs/common';
import { LockModule } from 'nestjs-distributed-lock';
import { BackendHealth } from './backend-health.js';
import { createLockBackend } from './lock-backend.js';
import { OrdersController } from './orders.controller.js';

@Module({
  imports: [
    // Options as an app reads them from its environment: strings ('30s', '0').
    LockModule.forRootAsync({
      isGlobal: true,
      useFactory: () => ({
        backend: createLockBackend(),
        keyPrefix: process.env.LOCK_PREFIX,
        ttl: process.env.LOCK_TTL,
        wait: process.env.LOCK_WAIT,
      }),
    }),
  ],
  providers: [BackendHealth],
  controllers: [OrdersController],
})
export class AppModule {}
