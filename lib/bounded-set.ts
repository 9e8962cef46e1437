/**
 * A set of at most `capacity` strings, for de-duplicating events that can arrive twice: adding one
 * more forgets the oldest (its twin was lost, or is so late that delivering it twice is harmless).
 */
export class BoundedSet {
  private readonly items = new Set<string>();

  constructor(private readonly capacity: number) {}

  add(item: string): void {
    this.items.delete(item);
    this.items.add(item);
    if (this.items.size > this.capacity) this.items.delete(this.items.values().next().value as string);
  }

  has(item: string): boolean {
    return this.items.has(item);
  }

  /** Removes `item`; true when it was there. */
  delete(item: string): boolean {
    return this.items.delete(item);
  }

  clear(): void {
    this.items.clear();
  }

  get size(): number {
    return this.items.size;
  }
}
