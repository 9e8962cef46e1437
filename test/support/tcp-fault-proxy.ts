import net from 'node:net';

/** What the proxy does to traffic right now. */
export type ProxyMode =
  /** Forward both ways at once. */
  | { kind: 'pass' }
  /** Forward both ways, each chunk held back `ms` milliseconds (order kept). */
  | { kind: 'latency'; ms: number }
  /**
   * Packets are dropped: nothing gets through either way and the connections stay open. As with
   * TCP's retransmissions, what was sent meanwhile arrives, in order, once the mode changes back.
   */
  | { kind: 'drop' }
  /** Cut every connection (RST) and refuse new ones until the mode changes: a partition. */
  | { kind: 'partition' };

interface Pair {
  client: net.Socket;
  server: net.Socket;
}

/**
 * A TCP proxy on a free loopback port between clients and a server, for fault tests: latency,
 * silent drops and partitions, switched at run time. `close()` stops it and every connection.
 */
export class TcpFaultProxy {
  private mode: ProxyMode = { kind: 'pass' };
  private readonly pairs = new Set<Pair>();
  /** Re-times the chunks held back in each direction when the mode changes. */
  private readonly flushes = new Set<() => void>();
  private readonly server: net.Server;
  port = 0;

  private constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {
    this.server = net.createServer((client) => this.accept(client));
  }

  static async start(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpFaultProxy> {
    const proxy = new TcpFaultProxy(targetHost, targetPort);
    await new Promise<void>((resolve, reject) => {
      proxy.server.once('error', reject);
      proxy.server.listen(0, '127.0.0.1', () => resolve());
    });
    proxy.port = (proxy.server.address() as net.AddressInfo).port;
    return proxy;
  }

  /** Number of client connections currently open through the proxy. */
  get connections(): number {
    return this.pairs.size;
  }

  set(mode: ProxyMode): void {
    this.mode = mode;
    if (mode.kind === 'partition') {
      for (const pair of [...this.pairs]) this.cut(pair);
    }
    for (const flush of this.flushes) flush();
  }

  async close(): Promise<void> {
    for (const pair of [...this.pairs]) this.cut(pair);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    if (this.mode.kind === 'partition') {
      client.resetAndDestroy();
      return;
    }
    const server = net.connect(this.targetPort, this.targetHost);
    const pair: Pair = { client, server };
    this.pairs.add(pair);
    client.setNoDelay(true);
    server.setNoDelay(true);
    this.pipe(client, server);
    this.pipe(server, client);
    const end = (): void => this.cut(pair);
    client.on('error', end).on('close', end);
    server.on('error', end).on('close', end);
  }

  /** Forwards `from` → `to` through a FIFO, so chunks keep their order whatever the mode does. */
  private pipe(from: net.Socket, to: net.Socket): void {
    const queue: Array<{ at: number; chunk: Buffer }> = [];
    let timer: NodeJS.Timeout | undefined;
    const delay = (): number => {
      const mode = this.mode;
      return mode.kind === 'latency' ? mode.ms : mode.kind === 'pass' ? 0 : Infinity;
    };
    const drain = (): void => {
      if (timer) clearTimeout(timer);
      timer = undefined;
      const now = Date.now();
      while (queue.length > 0 && queue[0].at <= now) {
        const { chunk } = queue.shift()!;
        if (!to.destroyed) to.write(chunk);
      }
      if (queue.length > 0 && queue[0].at !== Infinity) timer = setTimeout(drain, queue[0].at - now);
    };
    const flush = (): void => {
      // Chunks held back leave with the new mode's delay counted from now, in order.
      const latest = Date.now() + delay();
      for (const item of queue) item.at = Math.min(item.at, latest);
      drain();
    };
    this.flushes.add(flush);
    from.on('data', (chunk: Buffer) => {
      if (this.mode.kind === 'partition') return;
      queue.push({ at: Math.max(Date.now() + delay(), queue.at(-1)?.at ?? 0), chunk });
      if (!timer) drain();
    });
    from.on('close', () => {
      if (timer) clearTimeout(timer);
      queue.length = 0;
      this.flushes.delete(flush);
    });
  }

  private cut(pair: Pair): void {
    if (!this.pairs.delete(pair)) return;
    if (!pair.client.destroyed) pair.client.resetAndDestroy();
    if (!pair.server.destroyed) pair.server.destroy();
  }
}
