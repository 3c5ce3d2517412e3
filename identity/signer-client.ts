import net from 'node:net';
import { ErrorCode, GovernorError } from '../contracts/errors';

/**
 * The client side of `governor signer` (identity/signer.ts): newline-delimited JSON over a local Unix
 * socket, one connection kept open and made again after a failure. Requests:
 * `{"id":1,"op":"keys"}` → `{"id":1,"keys":{"receipt":{"kid":"…"}}}`;
 * `{"id":2,"op":"sign","key":"receipt","typ":"governor-receipt+jws","payload":"<hex digest>"}` →
 * `{"id":2,"jws":"<compact JWS>"}`; a refusal is `{"id":…,"error":"…"}`.
 * Every failure (no socket, no answer within the timeout, a refusal) is a `GovernorError` naming the
 * socket and the reason; no request or answer content is ever part of a message.
 */

/** Longest line either side accepts (a sign request carries at most a JWT's claims). */
export const SIGNER_MAX_LINE = 64 * 1024;

interface Pending {
  resolve: (v: Record<string, unknown>) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class SignerClient {
  private socket?: net.Socket;
  private connecting?: Promise<net.Socket>;
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 2000,
  ) {}

  /** The keys the signer holds, by name. */
  async keys(): Promise<Record<string, { kid: string }>> {
    const answer = await this.request({ op: 'keys' });
    const keys = answer.keys;
    if (typeof keys !== 'object' || keys === null) throw this.failure('its answer has no keys');
    return keys as Record<string, { kid: string }>;
  }

  /** A compact JWS of `payload` of type `typ` by the signer's key `key` (unchecked: see key-ref.ts `signVia`). */
  async sign(key: string, typ: string, payload: string): Promise<string> {
    const answer = await this.request({ op: 'sign', key, typ, payload });
    if (typeof answer.jws !== 'string') throw this.failure('its answer has no signature');
    return answer.jws;
  }

  close(): void {
    this.drop(this.failure('the client closed'));
  }

  private failure(why: string): GovernorError {
    return new GovernorError(ErrorCode.KeysMissing, `signer at ${this.socketPath} unavailable: ${why}`, 'signer');
  }

  private connect(): Promise<net.Socket> {
    if (this.socket && !this.socket.destroyed) return Promise.resolve(this.socket);
    this.connecting ??= new Promise<net.Socket>((resolve, reject) => {
      const socket = net.connect({ path: this.socketPath });
      const timer = setTimeout(() => socket.destroy(new Error('connect timed out')), this.timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        socket.on('error', (err) => this.drop(this.failure((err as NodeJS.ErrnoException).code ?? err.message)));
        socket.on('close', () => this.drop(this.failure('the connection closed')));
        socket.on('data', (d) => this.receive(d));
        socket.unref(); // an idle connection never keeps the process alive
        this.socket = socket;
        resolve(socket);
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(this.failure((err as NodeJS.ErrnoException).code ?? err.message));
      });
    }).finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async request(body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const socket = await this.connect();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        // No answer: this connection's state is unknown; every request on it fails and the next reconnects.
        this.drop(this.failure(`no answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      socket.ref(); // a request in flight keeps the process alive until it is answered
      socket.write(`${JSON.stringify({ id, ...body })}\n`);
    });
  }

  private receive(data: Buffer): void {
    this.buffer += data.toString('utf8');
    if (this.buffer.length > SIGNER_MAX_LINE && !this.buffer.includes('\n')) {
      this.drop(this.failure('its answer is too long'));
      return;
    }
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      let answer: Record<string, unknown>;
      try {
        answer = JSON.parse(line) as Record<string, unknown>;
      } catch {
        this.drop(this.failure('its answer is not JSON'));
        return;
      }
      const p = typeof answer.id === 'number' ? this.pending.get(answer.id) : undefined;
      if (!p) continue;
      this.pending.delete(answer.id as number);
      clearTimeout(p.timer);
      if (typeof answer.error === 'string') p.reject(this.failure(`refused: ${answer.error}`));
      else p.resolve(answer);
    }
    if (this.pending.size === 0) this.socket?.unref();
  }

  private drop(err: Error): void {
    const socket = this.socket;
    this.socket = undefined;
    this.buffer = '';
    socket?.destroy();
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(err);
    }
  }
}
