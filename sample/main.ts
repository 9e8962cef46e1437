import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { parseArgs } from 'node:util';
import type { INestApplication } from '@nestjs/common';
import { AppModule } from './app.module';
import { backendFromName } from './backend-from-args';

/**
 * `npm run demo [-- --backend memory|redis|postgres] [--requests N]`
 *
 * Starts the counter app (two instances sharing the backend, unless it is the one-process memory
 * backend), fires N concurrent increments at the endpoint without a lock and N at the one with a
 * lock, and prints how many updates each lost.
 */
async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      backend: { type: 'string', default: 'memory' },
      requests: { type: 'string', default: '50' },
    },
  });
  const backendName = values.backend!;
  const requests = Number(values.requests);
  if (!Number.isInteger(requests) || requests < 1 || requests > 10_000) {
    throw new Error(`--requests must be an integer from 1 to 10000, got ${values.requests}`);
  }
  const instances = backendName === 'memory' ? 1 : 2;
  const apps: INestApplication[] = [];
  try {
    for (let i = 0; i < instances; i++) {
      const app = await NestFactory.create(AppModule.register(backendFromName(backendName)), {
        logger: ['error', 'warn'],
      });
      await app.listen(0, '127.0.0.1');
      apps.push(app);
    }
    const urls = await Promise.all(apps.map((app) => app.getUrl()));
    console.log(`Counter app on the ${backendName} backend: ${instances} instance(s) at ${urls.join(', ')}`);
    console.log(
      `Each run: ${requests} concurrent POSTs, spread over the instances; each reads the counter, waits, writes it + 1.\n`,
    );

    const rows = [];
    for (const endpoint of ['unsafe', 'safe'] as const) {
      const name = `${endpoint}-${Date.now()}`;
      const started = performance.now();
      const statuses = await Promise.all(
        Array.from({ length: requests }, (_, i) =>
          fetch(`${urls[i % urls.length]}/counters/${name}/${endpoint}`, { method: 'POST' }).then((r) => r.status),
        ),
      );
      const ms = performance.now() - started;
      const final = (await (await fetch(`${urls[0]}/counters/${name}`)).json()) as { value: number };
      const ok = statuses.filter((s) => s === 201).length;
      rows.push({
        endpoint: `POST /counters/:name/${endpoint}`,
        lock: endpoint === 'safe' ? '@WithLock' : 'none',
        'requests ok': ok,
        'final count': final.value,
        'lost updates': ok - final.value,
        'time ms': Math.round(ms),
      });
    }
    console.table(rows);
    const [unsafe, safe] = rows;
    console.log(
      `\nWithout a lock ${unsafe['lost updates']} of ${requests} updates were lost; with @WithLock ${safe['lost updates']}.`,
    );
    if (safe['lost updates'] !== 0 || safe['requests ok'] !== requests) process.exitCode = 1;
  } finally {
    await Promise.all(apps.map((app) => app.close()));
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
