import { memoryBackend } from '../../lib';
import { describeLockBackendContract } from '../../lib/testing';
import { LatencyBackend } from '../../lib/testing/latency-backend';
import { jestApi } from '../support/jest-api';
import { memoryTarget } from './conformance.targets';

/**
 * The contract on a slow backend: the memory backend behind 60 ms on the way in and 60 ms on the
 * way out of every call, as a busy machine, a pool or a bouncer makes a real one. A correct backend
 * must pass however slowly it answers within reason, so no case may count on a fast answer (a
 * lease of a few hundred ms found held by the next call, a waiter queued before a short minHold
 * ended); this run finds one that does on every run, not only when CI's machine is loaded. The
 * cases pass up to 150 ms each way.
 */
const DELAY = 60;
const memory = memoryTarget();

describeLockBackendContract(jestApi, {
  ...memory,
  name: `memory, ${DELAY} ms each way`,
  create: () => {
    const slow = new LatencyBackend(memoryBackend(), () => 0.9999);
    slow.maxDelay = DELAY;
    return slow;
  },
  evict: (backend, backendKey) => memory.evict!((backend as LatencyBackend).inner, backendKey),
  inspect: (backend, backendKey) => memory.inspect!((backend as LatencyBackend).inner, backendKey),
});
