import { memoryBackend, type LockBackend } from '../../lib';
import { describeGiveUpContract } from './give-up.contract';
import { describeLockBackendContract } from './lock-backend.contract';
import { describeLockModelProperty } from '../property/lock-model.property';
import { memoryModelTarget } from '../property/lock-model.targets';

describeLockBackendContract('memory', {
  create: () => memoryBackend(),
  // A lease can only vanish from a process's own memory by its end; this drops it as a flush would.
  evict: async (backend: LockBackend, backendKey: string) => {
    const keys = (backend as unknown as { keys: Map<string, { lease?: unknown }> }).keys;
    const state = keys.get(backendKey);
    if (state) state.lease = undefined;
  },
});
describeGiveUpContract('memory', { create: () => memoryBackend() });
describeLockModelProperty('memory', memoryModelTarget());
