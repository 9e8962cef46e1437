import { memoryBackend } from '../../lib';
import { describeGiveUpContract } from './give-up.contract';
import { describeLockBackendContract } from './lock-backend.contract';

describeLockBackendContract('memory', { create: () => memoryBackend() });
describeGiveUpContract('memory', { create: () => memoryBackend() });
