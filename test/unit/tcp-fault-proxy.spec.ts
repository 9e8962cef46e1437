import net from 'node:net';
import { TcpFaultProxy } from '../support/tcp-fault-proxy';
import { sleep } from '../support/time';

/** An echo server behind the proxy: what the client sends comes back through both directions. */
describe('TcpFaultProxy', () => {
  let echo: net.Server;
  let proxy: TcpFaultProxy;
  let client: net.Socket;
  let received: string;

  beforeEach(async () => {
    echo = net.createServer((socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    proxy = await TcpFaultProxy.start((echo.address() as net.AddressInfo).port);
    client = net.connect(proxy.port, '127.0.0.1');
    received = '';
    client.on('data', (chunk) => (received += chunk.toString()));
    client.on('error', () => undefined);
    await new Promise<void>((resolve) => client.once('connect', resolve));
  });
  afterEach(async () => {
    client.destroy();
    await proxy.close();
    await new Promise<void>((resolve) => echo.close(() => resolve()));
  });

  const arrived = async (text: string, within = 2_000): Promise<boolean> => {
    const until = Date.now() + within;
    while (Date.now() < until) {
      if (received === text) return true;
      await sleep(5);
    }
    return received === text;
  };

  it('passes traffic both ways', async () => {
    client.write('hello');
    expect(await arrived('hello')).toBe(true);
  });

  it('holds traffic back while dropping and delivers it, in order, once healed', async () => {
    proxy.set({ kind: 'drop' });
    client.write('a');
    client.write('b');
    await sleep(150);
    expect(received).toBe('');
    proxy.set({ kind: 'pass' });
    expect(await arrived('ab')).toBe(true);
  });

  it('delays each chunk by the latency without starving later ones', async () => {
    proxy.set({ kind: 'latency', ms: 60 });
    const sent = Date.now();
    for (let i = 0; i < 5; i++) {
      client.write(String(i));
      await sleep(20);
    }
    expect(await arrived('01234')).toBe(true);
    expect(Date.now() - sent).toBeGreaterThanOrEqual(60);
  });

  it('cuts connections and refuses new ones during a partition', async () => {
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    proxy.set({ kind: 'partition' });
    await closed;
    const refused = net.connect(proxy.port, '127.0.0.1');
    await new Promise<void>((resolve) => {
      refused.once('error', () => resolve());
      refused.once('close', () => resolve());
    });
    expect(proxy.connections).toBe(0);
  });
});
