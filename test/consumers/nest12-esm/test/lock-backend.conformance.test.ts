import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { memoryBackend } from 'nestjs-distributed-lock';
import { describeLockBackendConformance } from 'nestjs-distributed-lock/testing';

// The conformance kit as a backend author runs it under vitest, here on the memory backend: no
// evict and no inspect (those read a backend's insides), so those cases say so in their names.
describeLockBackendConformance(
  { describe, it, expect, beforeEach, afterEach, afterAll },
  { name: 'memory (vitest)', create: () => memoryBackend(), inProcess: true },
);
