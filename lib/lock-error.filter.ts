import { Catch, HttpStatus, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { LockBackendError, LockTimeoutError } from './lock.errors';

/**
 * Answers HTTP requests whose handler failed on a lock: 409 Conflict when the lock stayed busy
 * (with `Retry-After` when the holder's remaining lease is known), 503 Service Unavailable when the backend failed. Registered by `LockModule` for the whole app,
 * so users need no filter of their own; their own filters on a controller or route still win.
 * Outside HTTP it steps aside and the typed error travels on unchanged. The 503 body names only
 * the backend kind; the cause (hosts, driver messages) goes to the server log, not to clients.
 */
@Catch(LockTimeoutError, LockBackendError)
export class LockErrorFilter implements ExceptionFilter {
  private readonly logger = new Logger('DistributedLock');

  constructor(private readonly adapterHost: HttpAdapterHost) {}

  catch(error: LockTimeoutError | LockBackendError, host: ArgumentsHost): void | undefined {
    if (host.getType() !== 'http') return undefined;
    const adapter = this.adapterHost.httpAdapter;
    const response = host.switchToHttp().getResponse<unknown>();
    if (error instanceof LockTimeoutError) {
      // Whole seconds, rounded up, when the backend told how long the holder's lease has left.
      if (error.retryIn !== undefined) adapter.setHeader(response, 'Retry-After', String(Math.max(1, Math.ceil(error.retryIn / 1000))));
      adapter.reply(
        response,
        { statusCode: HttpStatus.CONFLICT, error: 'Conflict', message: error.message, key: error.key },
        HttpStatus.CONFLICT,
      );
    } else {
      this.logger.error(error.message, error.stack);
      adapter.reply(
        response,
        {
          statusCode: HttpStatus.SERVICE_UNAVAILABLE,
          error: 'Service Unavailable',
          message: `Lock backend ${error.backend} is unavailable`,
        },
        HttpStatus.SERVICE_UNAVAILABLE,
      );
    }
  }
}
