import { LockBackendError, LockTimeoutError } from '../lock.errors';

/** The stable code of a lock error as microservice and WebSocket clients receive it. */
export type LockErrorCode = 'LOCK_BUSY' | 'LOCK_BACKEND_UNAVAILABLE';

/**
 * What a microservice client (the error of `ClientProxy.send`) or a WebSocket client (the
 * `exception` event) receives for a lock error: the shape of Nest's `RpcException` / `WsException`
 * errors (`status: 'error'`, `message`) with a `code` to branch on.
 */
export interface LockErrorReply {
  status: 'error';
  code: LockErrorCode;
  message: string;
  /** `LOCK_BUSY`: the key as the caller gave it (without the module's key prefix). */
  key?: string;
  /** `LOCK_BUSY`: ms left on the holder's lease when the wait ended, when the backend told it. */
  retryIn?: number;
}

/** The reply for a lock error. A backend failure names only the backend kind, never its cause. */
export function lockErrorReply(error: LockTimeoutError | LockBackendError): LockErrorReply {
  if (error instanceof LockTimeoutError) {
    return {
      status: 'error',
      code: 'LOCK_BUSY',
      message: error.message,
      key: error.key,
      ...(error.retryIn === undefined ? {} : { retryIn: error.retryIn }),
    };
  }
  return { status: 'error', code: 'LOCK_BACKEND_UNAVAILABLE', message: `Lock backend ${error.backend} is unavailable` };
}
