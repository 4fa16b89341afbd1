/**
 * A simulated crunch-run for `arvados-dispatch demo`, run as
 * `node sim-crunch-run.js <container-uuid>`. Like the real one it finds the
 * API through ARVADOS_API_HOST / ARVADOS_API_TOKEN / ARVADOS_API_HOST_INSECURE,
 * sets its container Running, "works", and sets it Complete; on SIGINT or
 * SIGTERM it sets it Cancelled and exits. The work is `sleep <seconds>` when
 * the container's command is that, else 0.3–1.5 s.
 *
 * Only node builtins, so it starts fast.
 *
 * @module
 */
import http from 'node:http';
import https from 'node:https';

const uuid = process.argv[process.argv.length - 1] ?? '';
const host = process.env.ARVADOS_API_HOST ?? '';
const token = process.env.ARVADOS_API_TOKEN ?? '';
const insecure = /^(1|yes|true)$/i.test(process.env.ARVADOS_API_HOST_INSECURE ?? '');
const base = /^https?:\/\//.test(host) ? host : `https://${host}`;

interface ContainerRecord {
  state?: string;
  priority?: number;
  command?: string[];
}

function fail(msg: string): never {
  process.stderr.write(`sim-crunch-run: ${msg}\n`);
  process.exit(1);
}

function api(method: 'GET' | 'PUT', body?: object): Promise<ContainerRecord> {
  const url = new URL(`/arvados/v1/containers/${uuid}`, base);
  const data = body === undefined ? undefined : JSON.stringify({ container: body });
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      url,
      {
        method,
        rejectUnauthorized: !insecure,
        headers: { Authorization: `Bearer ${token}`, ...(data ? { 'Content-Type': 'application/json' } : {}) },
        timeout: 10_000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (status >= 300) reject(new Error(`${method} ${uuid}: HTTP ${status}`));
          else resolve(JSON.parse(text) as ContainerRecord);
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${uuid}: timed out`)));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

let finishing = false;
let workTimer: NodeJS.Timeout | undefined;

async function finish(attrs: object): Promise<void> {
  if (finishing) return;
  finishing = true;
  clearTimeout(workTimer);
  await api('PUT', attrs);
}

function onSignal(): void {
  finish({ state: 'Cancelled' }).then(
    () => process.exit(0),
    (err: Error) => fail(`could not cancel: ${err.message}`),
  );
}

async function main(): Promise<void> {
  if (!/^[0-9a-z]{5}-dz642-[0-9a-z]{15}$/.test(uuid)) fail(`not a container UUID: ${JSON.stringify(uuid)}`);
  if (!host || !token) fail('ARVADOS_API_HOST and ARVADOS_API_TOKEN must be set');
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const c = await api('GET');
  if (c.state !== 'Locked' && c.state !== 'Running') fail(`container is ${c.state}, not Locked`);
  if (c.state === 'Locked') await api('PUT', { state: 'Running' });
  const cmd = c.command ?? [];
  const seconds = cmd[0] === 'sleep' && Number(cmd[1]) >= 0 ? Number(cmd[1]) : 0.3 + Math.random() * 1.2;
  await new Promise<void>((resolve) => (workTimer = setTimeout(resolve, seconds * 1000)));
  if (finishing) return;
  await finish({ state: 'Complete', exit_code: 0, output: 'd41d8cd98f00b204e9800998ecf8427e+0', log: 'd41d8cd98f00b204e9800998ecf8427e+0' });
}

main().catch((err: Error) => fail(err.message));
