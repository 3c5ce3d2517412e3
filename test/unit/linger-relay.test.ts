import net from 'node:net';
import { startLingerRelay, startLingerRelayProcess, type LingerRelay } from '../harness/linger-relay';

/** A plain TCP server standing in for the frontend: records what it receives and when its peer closes. */
async function upstreamServer(): Promise<{
  address: string;
  received: () => string;
  closedAt: () => number | undefined;
  sockets: net.Socket[];
  close(): Promise<void>;
}> {
  let received = '';
  let closedAt: number | undefined;
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    s.on('data', (d: Buffer) => (received += d.toString()));
    s.on('close', () => (closedAt = Date.now()));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    received: () => received,
    closedAt: () => closedAt,
    sockets,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

const until = async (what: string, cond: () => boolean, ms = 5000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

/** A client through `relay` that sends `request` (ending its sending side if `halfClose`) and reads the upstream's `answer`. */
async function exchange(
  relay: LingerRelay,
  up: Awaited<ReturnType<typeof upstreamServer>>,
  opts: { request: string; answer: string; halfClose?: boolean },
): Promise<net.Socket> {
  const client = net.connect({ port: Number(relay.address.split(':')[1]), host: '127.0.0.1', allowHalfOpen: true });
  let back = '';
  client.on('data', (d: Buffer) => (back += d.toString()));
  client.on('error', () => {});
  if (opts.halfClose) client.end(opts.request);
  else client.write(opts.request);
  await until('the upstream to receive the request', () => up.received() === opts.request);
  up.sockets[0]!.write(opts.answer);
  await until('the client to receive the answer', () => back === opts.answer);
  return client;
}

describe('the test harness relay in front of the shared dev server', () => {
  let relay: (LingerRelay & { openUpstreams?(): number }) | undefined;
  let up: Awaited<ReturnType<typeof upstreamServer>> | undefined;
  afterEach(async () => {
    await relay?.close();
    await up?.close();
  });

  it('relays both ways, and keeps the upstream connection open for lingerMs after the client dies', async () => {
    up = await upstreamServer();
    relay = await startLingerRelay(up.address, 400);
    const client = await exchange(relay, up, { request: 'request', answer: 'answer' });
    const died = Date.now();
    client.destroy();
    await new Promise((r) => setTimeout(r, 200));
    // The server still sees the connection (a call in flight on it would run to its end)...
    expect(up.closedAt()).toBeUndefined();
    expect(relay.openUpstreams!()).toBe(1);
    // ...and its late answer goes nowhere, without error.
    up.sockets[0]!.write('late answer');
    await until('the upstream connection to close', () => up!.closedAt() !== undefined);
    expect(up.closedAt()! - died).toBeGreaterThanOrEqual(390);
    await until('the relay to forget it', () => relay!.openUpstreams!() === 0);
  });

  it('closes the client at once when the server side closes', async () => {
    up = await upstreamServer();
    relay = await startLingerRelay(up.address, 60_000);
    const client = net.connect(Number(relay.address.split(':')[1]), '127.0.0.1');
    let clientClosed = false;
    client.on('close', () => (clientClosed = true));
    client.on('error', () => {});
    client.write('x');
    await until('the upstream connection', () => up!.sockets.length === 1);
    up.sockets[0]!.destroy();
    await until('the client to see the close', () => clientClosed, 2000);
  });

  it('lets a client that ended its sending side read the answer, without passing its end to the server', async () => {
    up = await upstreamServer();
    relay = await startLingerRelay(up.address, 2000);
    await exchange(relay, up, { request: 'request', answer: 'answer', halfClose: true });
    expect(up.closedAt()).toBeUndefined();
  });

  it('closes, and ends every client, even one that keeps its side open after the server ends', async () => {
    up = await upstreamServer();
    relay = await startLingerRelay(up.address, 60_000);
    // The client never ends its side by itself (allowHalfOpen): the relay must not wait for it.
    const client = await exchange(relay, up, { request: 'request', answer: 'answer' });
    let ended = false;
    client.on('end', () => (ended = true));
    await relay.close();
    relay = undefined;
    await until('the client to see the end', () => ended, 2000);
    client.destroy();
  });

  it('runs as a process of its own, relaying until its stdin closes', async () => {
    up = await upstreamServer();
    relay = await startLingerRelayProcess(up.address, 100);
    const port = Number(relay.address.split(':')[1]);
    const client = await exchange(relay, up, { request: 'through the child', answer: 'back' });
    await relay.close();
    relay = undefined;
    // The child is gone: nothing listens on its port any more.
    const refused = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('connect', () => (s.destroy(), resolve(false)));
      s.on('error', () => resolve(true));
    });
    expect(refused).toBe(true);
    client.destroy();
  }, 30_000);
});
