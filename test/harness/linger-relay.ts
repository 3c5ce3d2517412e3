import { spawn } from 'node:child_process';
import net from 'node:net';
import { swcRegister } from './worker-process';

/** A TCP relay in front of the shared test server (see startLingerRelay). */
export interface LingerRelay {
  /** `127.0.0.1:<port>`: what test clients and workers connect to. */
  address: string;
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
 *
 * A client that only ends its sending side (gRPC clients do not, while a call is open) still receives
 * what the server sends until the linger ends; its end is not passed on, since the server would read it
 * as the connection closing. The server closing is passed on at once.
 */
export async function startLingerRelay(
  target: string,
  lingerMs = 5000,
): Promise<LingerRelay & { openUpstreams(): number }> {
  const colon = target.lastIndexOf(':');
  const host = target.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  const port = Number(target.slice(colon + 1));
  const upstreams = new Set<net.Socket>();
  const clients = new Set<net.Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const upstream = net.connect(port, host);
    upstreams.add(upstream);
    clients.add(client);
    client.on('close', () => clients.delete(client));
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    let lingering = false;
    let clientGone = false;
    client.on('data', (d: Buffer) => upstream.write(d));
    upstream.on('data', (d: Buffer) => {
      if (!clientGone) client.write(d);
    });
    const linger = (): void => {
      if (lingering) return;
      lingering = true;
      const timer = setTimeout(() => {
        timers.delete(timer);
        clientGone = true;
        client.destroy();
        upstream.destroy();
      }, lingerMs);
      timers.add(timer);
    };
    // The client ended its sending side: it may still read until the linger ends.
    client.on('end', linger);
    // The client is gone: nothing more can reach it.
    const clientClosed = (): void => {
      clientGone = true;
      client.destroy();
      linger();
    };
    client.on('close', clientClosed);
    client.on('error', clientClosed);
    upstream.on('close', () => {
      upstreams.delete(upstream);
      // What the server sent last (a GOAWAY) is flushed before the client sees the end.
      if (!clientGone) client.end();
    });
    upstream.on('error', () => {
      upstreams.delete(upstream);
      upstream.destroy();
      clientGone = true;
      client.destroy();
    });
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
        for (const c of clients) c.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * The relay in a process of its own, so it keeps relaying while the test process is busy (jest runs the
 * integration suites in its own process on a 2-core machine, and bundling a workflow blocks it for
 * seconds). The child exits when its stdin closes, so it never outlives the test run.
 */
export async function startLingerRelayProcess(target: string, lingerMs = 5000): Promise<LingerRelay> {
  const child = spawn(process.execPath, ['-r', swcRegister(), __filename, target, String(lingerMs)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const address = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^relay (\S+)\n/m.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`the test relay exited (${code}) before listening`)));
  });
  return {
    address,
    async close() {
      child.stdin!.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

if (require.main === module) {
  const [target, linger] = process.argv.slice(2);
  void startLingerRelay(target!, Number(linger)).then((relay) => {
    process.stdout.write(`relay ${relay.address}\n`);
    process.stdin.on('data', () => {});
    process.stdin.on('end', () => void relay.close().then(() => process.exit(0)));
  });
}
