import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { AppModule } from './app.module.js';

/** Starts on Express or Fastify (PLATFORM), on a free loopback port, and prints its URL. */
async function bootstrap(): Promise<void> {
  const logger = ['error', 'warn'] as const;
  const app =
    process.env.PLATFORM === 'fastify'
      ? await NestFactory.create<NestFastifyApplication>(AppModule, new FastifyAdapter(), { logger: [...logger] })
      : await NestFactory.create(AppModule, { logger: [...logger] });
  app.enableShutdownHooks();
  await app.listen(0, '127.0.0.1');
  console.log(`listening at ${await app.getUrl()}`);
}
void bootstrap();
