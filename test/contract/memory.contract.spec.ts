import { memoryBackend, type LockBackend } from '../../lib';
import { describeLockBackendContract } from './lock-backend.contract';

describeLockBackendContract('memory', {
  create: () => memoryBackend(),
  // A lease can only vanish from a process's own memory by its end; this drops it as a flush would.
  evict: async (backend: LockBackend, backendKey: string) => {
    const keys = (backend as unknown as { keys: Map<string, { lease?: unknown }> }).keys;
    const state = keys.get(backendKey);
    if (state) state.lease = undefined;
  },
});
