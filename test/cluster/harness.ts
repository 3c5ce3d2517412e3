import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CLUSTER_PORT_SPAN, clusterPorts, type ClusterPorts } from '../../runtime/cluster';

/*
 * Processes of the cluster suite: governor workers and the example service as child processes
 * (test/cluster/cluster-worker.ts, TypeScript run through an @swc/core require hook, as jest runs it),
 * and a free port block for the cluster.
 */

const root = path.join(__dirname, '..', '..');
let registerFile: string | undefined;

function swcRegister(): string {
  if (registerFile) return registerFile;
  const swc = require.resolve('@swc/core', { paths: [root] });
  const source = `'use strict';
const fs = require('node:fs');
const swc = require(${JSON.stringify(swc)});
require.extensions['.ts'] = function (module, filename) {
  const { code } = swc.transformSync(fs.readFileSync(filename, 'utf8'), {
    filename,
    jsc: { target: 'es2022', parser: { syntax: 'typescript' } },
    module: { type: 'commonjs' },
  });
  module._compile(code, filename);
};
`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-cluster-register-'));
  registerFile = path.join(dir, 'register.js');
  fs.writeFileSync(registerFile, source);
  return registerFile;
}

export interface Child {
  name: string;
  pid: number;
  ready: Promise<void>;
  exited: Promise<void>;
  running(): boolean;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts a cluster-worker child with `env`; its output goes to `logFile`. */
export function startChild(name: string, env: Record<string, string>, logFile: string): Child {
  const child: ChildProcess = spawn(
    process.execPath,
    ['-r', swcRegister(), path.join(__dirname, 'cluster-worker.ts')],
    {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const log = fs.openSync(logFile, 'a');
  let tail = '';
  const collect = (d: Buffer): void => {
    fs.writeSync(log, d);
    tail = (tail + d.toString()).slice(-4096);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      fs.closeSync(log);
      resolve();
    }),
  );
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', () => {
      if (/^ready\b/m.test(tail)) resolve();
    });
    void exited.then(() => reject(new Error(`${name} exited before it was ready:\n${tail}`)));
  });
  ready.catch(() => undefined);
  return {
    name,
    pid: child.pid ?? -1,
    ready,
    exited,
    running: () => child.exitCode === null && child.signalCode === null,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** A base port whose whole block (below 32768: membership ports are a SMALLINT) is free right now. */
export async function freeClusterBase(): Promise<{ base: number; ports: ClusterPorts }> {
  const net = await import('node:net');
  const free = (port: number) =>
    new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * (32767 - CLUSTER_PORT_SPAN - 20000));
    let ok = true;
    for (let p = base; p <= base + CLUSTER_PORT_SPAN && ok; p++) ok = await free(p);
    if (ok) return { base, ports: clusterPorts(base) };
  }
  throw new Error('no free port block for the cluster');
}
