import { Injectable } from '@nestjs/common';
import { LockBackend } from 'nestjs-distributed-lock';

/** Injects the module's backend by its type, in a decorated signature (isolatedModules + emitDecoratorMetadata). */
@Injectable()
export class BackendHealth {
  constructor(private readonly backend: LockBackend) {}

  async check(): Promise<{ backend: string; answers: boolean }> {
    await this.backend.ping();
    return { backend: this.backend.name, answers: true };
  }
}
