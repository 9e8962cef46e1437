import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { memoryBackend } from 'nestjs-distributed-lock';
import { describeLockBackendConformance } from 'nestjs-distributed-lock/testing';

// The conformance kit as a backend author runs it under vitest, here on the memory backend: no
// evict and no inspect (those read a backend's insides), so those cases say so in their names. It
// claims the modes the memory backend keeps, so the shared and limited cases and their models run too.
describeLockBackendConformance(
  { describe, it, expect, beforeEach, afterEach, afterAll },
  {
    name: 'memory (vitest)',
    create: () => memoryBackend(),
    inProcess: true,
    capabilities: { fifo: true, fencing: 'strict', modes: ['shared', 'limit'] },
  },
);
