import net from 'node:net';

/** A TCP relay in front of the shared test server (see startLingerRelay). */
export interface LingerRelay {
  /** `127.0.0.1:<port>`: what test clients and workers connect to. */
  address: string;
  /** Upstream connections still open: their client is gone or not. */
  openUpstreams(): number;
  close(): Promise<void>;
}

/**
 * A TCP relay that keeps each upstream connection open for `lingerMs` after its client's side closes.
 *
 * Why: the dev server's SQLite (the pure-Go driver, one connection for everything) can be left
 * permanently "interrupted (9)" when a query's context is cancelled at the wrong moment, and the server
 * cancels the context of every call on a connection when that connection drops. Tests SIGKILL workers
 * and cut their sockets while a worker's archiver may be listing closed chains; one such cut at the wrong
 * moment failed every later suite of a CI run. Through this relay, a client that dies leaves its calls
 * running to completion on the server (the answers are dropped); only after `lingerMs` does the server
 * see the connection close, when nothing short-lived is still in flight on it.
 */
export async function startLingerRelay(target: string, lingerMs = 5000): Promise<LingerRelay> {
  const colon = target.lastIndexOf(':');
  const host = target.slice(0, colon);
  const port = Number(target.slice(colon + 1));
  const upstreams = new Set<net.Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, host);
    upstreams.add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    let clientGone = false;
    client.on('data', (d: Buffer) => upstream.write(d));
    upstream.on('data', (d: Buffer) => {
      if (!clientGone) client.write(d);
    });
    const clientClosed = (): void => {
      if (clientGone) return;
      clientGone = true;
      client.destroy();
      const timer = setTimeout(() => {
        timers.delete(timer);
        upstream.destroy();
      }, lingerMs);
      timers.add(timer);
    };
    client.on('end', clientClosed);
    client.on('close', clientClosed);
    client.on('error', clientClosed);
    // The server going away is passed on at once.
    const upstreamClosed = (): void => {
      upstreams.delete(upstream);
      upstream.destroy();
      if (!clientGone) {
        clientGone = true;
        client.destroy();
      }
    };
    upstream.on('close', upstreamClosed);
    upstream.on('error', upstreamClosed);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    openUpstreams: () => upstreams.size,
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        for (const u of upstreams) u.destroy();
        server.close(() => resolve());
      }),
  };
}
