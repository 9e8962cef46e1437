import { Injectable } from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';

/** Shared by every app instance in the process, as a database would be shared by a fleet. */
const values = new Map<string, number>();

/**
 * A stand-in for a remote resource (a row, a document, a payment provider): every read and write
 * takes a little while, so concurrent read-modify-write cycles interleave and lose updates unless
 * a lock serialises them.
 */
@Injectable()
export class CounterStore {
  private readonly values = values;

  async read(name: string): Promise<number> {
    await sleep(2);
    return this.values.get(name) ?? 0;
  }

  async write(name: string, value: number): Promise<void> {
    await sleep(2);
    this.values.set(name, value);
  }

  reset(): void {
    this.values.clear();
  }
}
