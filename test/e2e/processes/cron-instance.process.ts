// One app instance with a @Cron job every 2 s under @WithLock, its cron clock shifted by SKEW ms
// (as a host whose clock runs ahead or behind would be). Prints a JSON line per run of the job.
// argv: backend (redis|postgres) connection key-prefix skew-ms min-hold-ms
import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Cron, ScheduleModule } from '@nestjs/schedule';
import { Settings } from 'luxon';
import { setTimeout as sleep } from 'node:timers/promises';
import { LockModule, WithLock } from '../../../lib';
import { postgresBackend } from '../../../lib/postgres';
import { redisBackend } from '../../../lib/redis';

const [kind, connection, keyPrefix, skewArg, minHoldArg] = process.argv.slice(2);
const skew = Number(skewArg);
const minHold = Number(minHoldArg);
Settings.now = () => Date.now() + skew;

@Injectable()
class ReportJob {
  @Cron('*/2 * * * * *')
  @WithLock('report', { wait: 0, onBusy: 'skip', minHold })
  async report(): Promise<void> {
    process.stdout.write(`${JSON.stringify({ ran: Date.now() })}\n`);
    await sleep(20);
  }
}

const backend =
  kind === 'redis'
    ? redisBackend({ url: connection })
    : postgresBackend({ connection, schema: keyPrefix.replace(/[^a-z0-9_]/g, '_'), applicationName: 'dl-cron-test' });

@Module({
  imports: [ScheduleModule.forRoot(), LockModule.forRoot({ backend, keyPrefix })],
  providers: [ReportJob],
})
class CronModule {}

async function main(): Promise<void> {
  const app = await NestFactory.createApplicationContext(CronModule, { logger: ['error', 'warn'] });
  app.enableShutdownHooks();
  process.stdout.write(`${JSON.stringify({ ready: Date.now() })}\n`);
}

void main();
