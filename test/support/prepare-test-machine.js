#!/usr/bin/env node
/*
 * Runs first in `npm test`: makes sure the machine has what the tests need, or stops at once with
 * one message that says what is missing and how to install it (never minutes of time-outs).
 *
 * Needed: the programs the tests spawn (redis-server and redis-cli; pgbouncer; PostgreSQL's initdb
 * and pg_ctl) and the shared servers (Redis at REDIS_URL, PostgreSQL at DATABASE_URL, the local
 * defaults when unset). When something is missing and this runs as root with apt-get, it runs
 * .ci/redis.sh / .ci/postgres.sh, which install Debian's packages and start the local servers, and
 * checks again. `--check-only` never installs anything.
 *
 * DL_PROGRAM_DIRS (colon-separated) replaces the directories searched for programs (for tests).
 */
'use strict';
const { execFileSync } = require('node:child_process');
const { existsSync, readdirSync } = require('node:fs');
const { join, resolve } = require('node:path');

const ROOT = resolve(__dirname, '..', '..');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

function programDirs() {
  if (process.env.DL_PROGRAM_DIRS !== undefined) return process.env.DL_PROGRAM_DIRS.split(':').filter(Boolean);
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  const pgRoot = '/usr/lib/postgresql';
  if (process.env.PG_BINDIR) dirs.push(process.env.PG_BINDIR);
  else if (existsSync(pgRoot)) for (const version of readdirSync(pgRoot)) dirs.push(join(pgRoot, version, 'bin'));
  return dirs.filter(Boolean);
}

function has(program) {
  return programDirs().some((dir) => existsSync(join(dir, program)));
}

/** Each needed program, the Debian package it comes in, and the .ci script that installs it. */
const PROGRAMS = [
  {
    program: 'redis-server',
    pkg: 'redis-server',
    script: '.ci/redis.sh',
    for: 'the quorum, Cluster, Sentinel and fault tests',
  },
  { program: 'redis-cli', pkg: 'redis-tools', script: '.ci/redis.sh', for: 'the Cluster tests' },
  { program: 'pgbouncer', pkg: 'pgbouncer', script: '.ci/postgres.sh', for: 'the PgBouncer tests' },
  { program: 'initdb', pkg: 'postgresql', script: '.ci/postgres.sh', for: "the tests' private PostgreSQL servers" },
  { program: 'pg_ctl', pkg: 'postgresql', script: '.ci/postgres.sh', for: "the tests' private PostgreSQL servers" },
];

async function redisAnswers() {
  const { Redis } = require('ioredis');
  const client = new Redis(REDIS_URL, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 3_000,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

async function postgresAnswers() {
  const { Client } = require('pg');
  const client = new Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 3_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** What is missing, as { what, pkg?, script } items. */
async function missing() {
  const found = [];
  for (const need of PROGRAMS) {
    if (!has(need.program))
      found.push({ what: `${need.program} (for ${need.for})`, pkg: need.pkg, script: need.script });
  }
  if (!(await redisAnswers())) found.push({ what: `a Redis answering at ${REDIS_URL}`, script: '.ci/redis.sh' });
  if (!(await postgresAnswers()))
    found.push({ what: `a PostgreSQL answering at ${DATABASE_URL}`, script: '.ci/postgres.sh' });
  return found;
}

function canInstall() {
  return process.getuid?.() === 0 && existsSync('/usr/bin/apt-get');
}

async function main() {
  const checkOnly = process.argv.includes('--check-only');
  let lacking = await missing();
  if (lacking.length > 0 && !checkOnly && canInstall()) {
    for (const script of [...new Set(lacking.map((m) => m.script))]) {
      console.log(
        `npm test: ${lacking
          .filter((m) => m.script === script)
          .map((m) => m.what)
          .join(', ')} missing: running ${script}`,
      );
      try {
        execFileSync('bash', [join(ROOT, script)], { stdio: 'inherit', timeout: 15 * 60_000 });
      } catch (error) {
        console.error(`npm test: ${script} failed: ${error.message}`);
      }
    }
    lacking = await missing();
  }
  if (lacking.length === 0) return;
  const packages = [...new Set(lacking.map((m) => m.pkg).filter(Boolean))];
  const lines = [
    `npm test cannot run: this machine lacks ${lacking.map((m) => m.what).join('; ')}.`,
    ...(packages.length > 0 ? [`Install with: sudo apt-get install -y ${packages.join(' ')}`] : []),
    `Or, as root, run ${[...new Set(lacking.map((m) => m.script))].map((s) => `bash ${s}`).join(' && ')}, which installs what is missing and starts the local servers` +
      ' (or point REDIS_URL / DATABASE_URL at servers of yours).',
  ];
  console.error(lines.join('\n'));
  process.exitCode = 1;
}

main().catch((error) => {
  console.error(`npm test: checking the machine failed: ${error.stack ?? error}`);
  process.exitCode = 1;
});
