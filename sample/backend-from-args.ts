import { memoryBackend, type LockBackend } from '../lib';

export const BACKEND_NAMES = ['memory'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

/** Builds the backend the demo runs on, from its name (connection settings come from the environment). */
export function backendFromName(name: string): LockBackend {
  switch (name) {
    case 'memory':
      return memoryBackend();
    default:
      throw new Error(`Unknown --backend "${name}"; choose one of: ${BACKEND_NAMES.join(', ')}`);
  }
}
