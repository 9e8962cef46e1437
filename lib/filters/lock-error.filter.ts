import { Catch, HttpStatus, Logger, Optional, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { throwError } from 'rxjs';
import { LockBackendError, LockTimeoutError } from '../lock.errors';
import { lockErrorReply } from './lock-error-reply';

/**
 * Answers a handler that failed on a lock, in the terms of its transport:
 * - HTTP (Express, Fastify): 409 Conflict when the lock stayed busy, with `Retry-After` when the
 *   holder's remaining lease is known; 503 Service Unavailable when the backend failed.
 * - Microservices (`@MessagePattern`, `@EventPattern`): the error the client receives, shaped as
 *   Nest's `RpcException` errors, `{ status: 'error', code: 'LOCK_BUSY', message, key, retryIn? }`
 *   or `{ status: 'error', code: 'LOCK_BACKEND_UNAVAILABLE', message }`.
 * - WebSockets (`@SubscribeMessage`): the same body as an `exception` event to the client, as
 *   Nest's `WsException` is sent, with `cause: { pattern, data }` of the message that failed.
 *
 * A busy lock is an answer, not a server fault: at most a debug line is logged for it. A
 * backend failure is logged once (message and stack) and the client gets only the backend kind.
 * In other contexts (GraphQL resolvers and other external contexts) it returns nothing, so Nest's
 * own handler for that context does what it does without a filter (logs and rethrows).
 *
 * `LockModule` registers it for the whole app (`errorFilters: false` turns that off); filters of
 * your own on a controller, gateway or handler still win.
 */
@Catch(LockTimeoutError, LockBackendError)
export class LockErrorFilter implements ExceptionFilter {
  private readonly logger = new Logger('DistributedLock');

  constructor(@Optional() private readonly adapterHost?: HttpAdapterHost) {}

  catch(error: LockTimeoutError | LockBackendError, host: ArgumentsHost): unknown {
    switch (host.getType<string>()) {
      case 'http':
        return this.answerHttp(error, host);
      case 'rpc':
        return this.answerRpc(error);
      case 'ws':
        return this.answerWs(error, host);
      default:
        return undefined;
    }
  }

  private answerHttp(error: LockTimeoutError | LockBackendError, host: ArgumentsHost): void {
    const adapter = this.adapterHost?.httpAdapter;
    if (adapter === undefined) throw error; // not the module's instance: no adapter to answer with
    const response = host.switchToHttp().getResponse<unknown>();
    if (error instanceof LockTimeoutError) {
      // Whole seconds, rounded up, when the backend told how long the holder's lease has left.
      if (error.retryIn !== undefined)
        adapter.setHeader(response, 'Retry-After', String(Math.max(1, Math.ceil(error.retryIn / 1000))));
      adapter.reply(
        response,
        { statusCode: HttpStatus.CONFLICT, error: 'Conflict', message: error.message, key: error.key },
        HttpStatus.CONFLICT,
      );
    } else {
      this.logBackendFailure(error);
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

  /**
   * The observable error Nest's microservice server sends to the client of a `@MessagePattern`;
   * an `@EventPattern` has no client to answer, so there it only ends the handling of the event.
   */
  private answerRpc(error: LockTimeoutError | LockBackendError): unknown {
    if (error instanceof LockBackendError) this.logBackendFailure(error);
    else this.logger.debug(`${error.message}: answered LOCK_BUSY to the microservice client`);
    const reply = lockErrorReply(error);
    return throwError(() => reply);
  }

  private answerWs(error: LockTimeoutError | LockBackendError, host: ArgumentsHost): void {
    const ws = host.switchToWs();
    const client = ws.getClient<{ emit?: (event: string, ...args: unknown[]) => unknown } | undefined>();
    if (error instanceof LockBackendError) this.logBackendFailure(error);
    else this.logger.debug(`${error.message}: sent LOCK_BUSY to the WebSocket client`);
    // As Nest's own WebSocket exception handler: a client without `emit` gets nothing.
    if (typeof client?.emit !== 'function') return;
    const pattern = typeof ws.getPattern === 'function' ? ws.getPattern() : undefined;
    client.emit('exception', { ...lockErrorReply(error), cause: { pattern, data: ws.getData<unknown>() } });
  }

  private logBackendFailure(error: LockBackendError): void {
    this.logger.error(error.message, error.stack);
  }
}
