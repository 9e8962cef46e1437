import { memoryBackend } from '../../lib';
import { describeLockBackendContract } from './lock-backend.contract';
import { describeLockModelProperty } from '../property/lock-model.property';
import { memoryModelTarget } from '../property/lock-model.targets';

describeLockBackendContract('memory', { create: () => memoryBackend() });
describeLockModelProperty('memory', memoryModelTarget());
