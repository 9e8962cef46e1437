import { memoryBackend } from '../../lib';
import { describeLockBackendContract } from './lock-backend.contract';

describeLockBackendContract('memory', { create: () => memoryBackend() });
