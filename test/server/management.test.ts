// The management listener over real HTTP, in front of a real Dispatcher on
// FakeArvados: the token check, health, the dispatch API in the cloud
// dispatcher's shapes (kill cancels the container on the API), and
// /metrics as Prometheus parses it, moving as containers run.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { afterEach, describe, expect, it } from '@jest/globals';
import { Dispatcher, type RunContainer } from '../../src/index.js';
import { HealthMonitor } from '../../src/server/health.js';
import { startManagementServer, type ManagementServer } from '../../src/server/management.js';
import { DispatchMetrics } from '../../src/server/metrics.js';
import { observeDispatcher } from '../../src/server/observe.js';
import { FakeArvados } from '../../src/testing/index.js';
import { parseExposition } from '../helpers/prometheus.js';
import { waitFor } from '../helpers/wait.js';

const TOKEN = 'mgmt-token-0123456789abcdefghijklmnopqrstuvwxyz';

let fake: FakeArvados | undefined;
let d: Dispatcher | undefined;
let running: Promise<void> | undefined;
let server: ManagementServer | undefined;

afterEach(async () => {
  await d?.stop();
  await running?.catch(() => {});
  await server?.close();
  await fake?.stop();
  fake = d = running = server = undefined;
});

/** A crunch-run stand-in: marks the container Running on the API and follows it until it is final. */
function crunchRunLike(f: FakeArvados): RunContainer {
  return async (_d, c, updates) => {
    if (c.state === 'Locked') f.startContainer(c.uuid);
    for await (const u of updates) if (u.state === 'Complete' || u.state === 'Cancelled') return;
  };
}

async function setup(opts: { pollInterval?: number; health?: HealthMonitor } = {}) {
  fake = await new FakeArvados().start();
  const pollInterval = opts.pollInterval ?? 25;
  d = new Dispatcher({
    client: fake.client({ retryDelay: 5, maxRetryDelay: 20, timeout: 2000, retries: 0 }),
    runContainer: crunchRunLike(fake),
    pollInterval,
    handleSignals: false,
    shutdownTimeout: 5000,
  });
  const metrics = new DispatchMetrics();
  const health = opts.health ?? new HealthMonitor().watch('api', pollInterval);
  observeDispatcher(metrics, health, d);
  server = await startManagementServer({ listen: [{ host: '127.0.0.1', port: 0 }], token: TOKEN, health, metrics, dispatch: d });
  running = d.run();
  return { fake, d, metrics, health, base: `http://${server.address}` };
}

async function get(url: string, token: string | null = TOKEN, init: RequestInit = {}): Promise<{ status: number; body: string; type: string | null }> {
  const res = await fetch(url, { ...init, headers: { ...(token !== null ? { Authorization: `Bearer ${token}` } : {}), ...(init.headers ?? {}) } });
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') };
}

/** The JSON answers of the management API, as far as the tests read them. */
interface Answer {
  health?: string;
  error?: string;
  errors?: string[];
  items: Item[];
  container: Record<string, unknown> & { uuid: string; state: string };
  instance_type?: unknown;
  instance_types?: unknown[];
  instance_resources?: Record<string, number>;
  first_seen_at?: string;
  scheduling_status?: string;
}
type Item = Pick<Answer, 'container' | 'instance_type' | 'instance_types' | 'instance_resources' | 'first_seen_at' | 'scheduling_status'>;

/** A self-signed certificate for 127.0.0.1, made with openssl. */
async function selfSigned(): Promise<{ cert: string; key: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'arvados-dispatch-tls-'));
  try {
    await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')]);
    return { cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), key: readFileSync(join(dir, 'key.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** GET over TLS trusting only `ca`: the status, the body, and the fingerprint of the certificate served. */
function httpsGet(url: string, ca: string): Promise<{ status: number; body: string; fingerprint: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, headers: { Authorization: `Bearer ${TOKEN}` } }, (res) => {
      const fingerprint = (res.socket as TLSSocket).getPeerX509Certificate()?.fingerprint256 ?? '';
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, fingerprint }));
    });
    req.on('error', reject);
  });
}

async function json(url: string, init: RequestInit = {}): Promise<{ status: number; body: Answer }> {
  const r = await get(url, TOKEN, init);
  return { status: r.status, body: JSON.parse(r.body) };
}

describe('management listener', () => {
  it('without a token it starts, and answers every request 404 "disabled", as the Go services do', async () => {
    const args = { listen: [{ host: '127.0.0.1', port: 0 }], health: new HealthMonitor(), metrics: new DispatchMetrics({ processMetrics: false }) };
    const dispatch = { entries: () => [], kill: async () => 'none' as const };
    for (const token of [undefined, '']) {
      server = await startManagementServer({ ...args, token, dispatch });
      const base = `http://${server.address}`;
      for (const [path, method] of [['/_health/ping', 'GET'], ['/metrics', 'GET'], ['/arvados/v1/dispatch/containers', 'GET'], ['/arvados/v1/dispatch/containers/kill?container_uuid=x', 'POST'], ['/nowhere', 'GET']]) {
        for (const auth of [null, 'anything', '']) {
          const r = await get(`${base}${path}`, auth, { method });
          expect([path, r.status, r.body, r.type]).toEqual([path, 404, 'disabled\n', 'text/plain; charset=utf-8']);
        }
      }
      await server.close();
      server = undefined;
    }
  });

  it('an https address serves TLS with the given certificate; without one it is refused', async () => {
    const { cert, key } = await selfSigned();
    const args = { health: new HealthMonitor(), metrics: new DispatchMetrics({ processMetrics: false }), dispatch: { entries: () => [], kill: async () => 'none' as const } };
    server = await startManagementServer({ ...args, listen: [{ host: '127.0.0.1', port: 0, tls: true }], token: TOKEN, tls: { cert, key } });
    expect(server.protocol).toBe('https');
    const answer = await httpsGet(`https://${server.address}/_health/ping`, cert);
    expect(answer).toEqual({ status: 200, body: '{"health":"OK"}\n', fingerprint: new X509Certificate(cert).fingerprint256 });
    await expect(startManagementServer({ ...args, listen: [{ host: '127.0.0.1', port: 0, tls: true }], token: TOKEN })).rejects.toThrow(
      /cannot start the management listener \(127\.0\.0\.1:0: an https address needs TLS\.Certificate and TLS\.Key\)/,
    );
  });

  it('says which address it could not listen on', async () => {
    const { base } = await setup();
    const port = Number(new URL(base).port);
    const dispatch = { entries: () => [], kill: async () => 'none' as const };
    await expect(
      startManagementServer({ listen: [{ host: '127.0.0.1', port }], token: TOKEN, health: new HealthMonitor(), metrics: new DispatchMetrics({ processMetrics: false }), dispatch }),
    ).rejects.toThrow(`cannot start the management listener (127.0.0.1:${port}: address in use)`);
  });

  it('every endpoint needs the management token: 401 without one, 403 with another', async () => {
    const { base } = await setup();
    const paths = ['/_health/ping', '/metrics', '/arvados/v1/dispatch/containers', '/arvados/v1/dispatch/container?container_uuid=x', '/nowhere'];
    for (const p of paths) {
      expect((await get(`${base}${p}`, null)).status).toBe(401);
      expect((await get(`${base}${p}`, 'wrong')).status).toBe(403);
      // A prefix of the token is not the token.
      expect((await get(`${base}${p}`, TOKEN.slice(0, -1))).status).toBe(403);
    }
    const kill = await get(`${base}/arvados/v1/dispatch/containers/kill?container_uuid=x`, 'wrong', { method: 'POST' });
    expect(kill.status).toBe(403);
    expect((await get(`${base}/_health/ping`, null, { headers: { Authorization: `OAuth2 ${TOKEN}` } })).status).toBe(200);
  });

  it('/_health/ping answers OK, then ERROR with a reason once the API poll has failed for longer than its grace', async () => {
    const health = new HealthMonitor({ minGrace: 0, intervals: 3 });
    const { base, fake: f, d: disp } = await setup({ health: health.watch('api', 25) });
    await waitFor(() => disp.status.cycles > 0 && disp.status.healthy, 'a complete poll');
    expect((await json(`${base}/_health/ping`)).body).toEqual({ health: 'OK' });
    f.setFaults({ rate: 1, kinds: [500], routes: ['containers.list'] });
    const bad = await waitFor(async () => {
      const r = await json(`${base}/_health/ping`);
      return r.body.health === 'ERROR' && r;
    }, 'health ERROR');
    expect(bad.status).toBe(200);
    expect(bad.body.error).toMatch(/^the API poll has failed for \d+s: /);
    f.setFaults(undefined);
    await waitFor(async () => (await json(`${base}/_health/ping`)).body.health === 'OK', 'health OK again');
  });

  it('lists the containers it holds in the cloud dispatcher shapes, answers one, and 404s one it does not hold', async () => {
    const { base, fake: f } = await setup();
    const [a, b] = f.addContainers(2, { priority: 1, runtime_constraints: { vcpus: 2, ram: 2 ** 30, keep_cache_ram: 2 ** 20 }, runtime_token: 'v2/zzzzz-gj3su-000000000000000/secretsecretsecret' } as never);
    await waitFor(() => f.container(a.uuid)?.state === 'Running' && f.container(b.uuid)?.state === 'Running', 'both running');
    const list = await waitFor(async () => {
      const r = await json(`${base}/arvados/v1/dispatch/containers`);
      return r.body.items.length === 2 && r.body.items.every((i) => i.container.state === 'Running') && r;
    }, 'both listed as Running');
    expect(list.status).toBe(200);
    const item = list.body.items.find((i) => i.container.uuid === a.uuid);
    // Both shapes: the older documented one and Arvados HEAD's.
    expect(Object.keys(item!).sort()).toEqual(['container', 'first_seen_at', 'instance_resources', 'instance_type', 'instance_types', 'scheduling_status']);
    expect(item!.instance_type).toBeNull();
    expect(item!.instance_types).toEqual([]);
    expect(item!.instance_resources).toEqual({ VCPUs: 2, RAM: 2 ** 30 + 2 ** 20, Scratch: 0, GPUs: 0, GPUVRAM: 0 });
    expect(Date.parse(item!.first_seen_at!)).toBeLessThanOrEqual(Date.now());
    expect(item!.scheduling_status).toBe('running');
    expect(Object.keys(item!.container).sort()).toEqual(['container_image', 'created_at', 'priority', 'runtime_constraints', 'scheduling_parameters', 'state', 'uuid']);
    // No field that may carry a secret leaves through this API.
    expect(JSON.stringify(list.body)).not.toContain('secretsecret');

    const one = await json(`${base}/arvados/v1/dispatch/container?container_uuid=${b.uuid}`);
    expect(one.status).toBe(200);
    expect(one.body.container.uuid).toBe(b.uuid);
    expect(one.body.scheduling_status).toBe('running');

    const other = `${f.clusterId}-dz642-000000000000000`;
    const missing = await json(`${base}/arvados/v1/dispatch/container?container_uuid=${other}`);
    expect(missing).toEqual({ status: 404, body: { errors: ['container not found'] } });
    expect((await json(`${base}/arvados/v1/dispatch/container`)).status).toBe(400);
    expect((await get(`${base}/arvados/v1/dispatch/containers`, TOKEN, { method: 'DELETE' })).status).toBe(405);
  });

  it('kill cancels the container on the API with the reason; a container it does not hold is 404', async () => {
    const { base, fake: f } = await setup();
    const [c] = f.addContainers(1, { priority: 1 });
    await waitFor(() => f.container(c.uuid)?.state === 'Running', 'running');
    await waitFor(async () => (await json(`${base}/arvados/v1/dispatch/container?container_uuid=${c.uuid}`)).status === 200, 'held');
    const r = await get(`${base}/arvados/v1/dispatch/containers/kill?container_uuid=${c.uuid}&reason=${encodeURIComponent('stuck on node7')}`, TOKEN, { method: 'POST' });
    expect(r.status).toBe(200);
    const after = f.container(c.uuid)!;
    expect(after.state).toBe('Cancelled');
    expect(after.runtime_status).toMatchObject({ error: 'via management API: stuck on node7' });
    expect(f.logs.some((l) => l.object_uuid === c.uuid && String(l.properties?.text).includes('stuck on node7'))).toBe(true);

    const other = `${f.clusterId}-dz642-000000000000001`;
    const form = await get(`${base}/arvados/v1/dispatch/containers/kill`, TOKEN, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: `container_uuid=${other}&reason=x`,
    });
    expect(form.status).toBe(404);
    expect((await get(`${base}/arvados/v1/dispatch/containers/kill`, TOKEN, { method: 'POST' })).status).toBe(400);
  });

  it('/metrics is valid Prometheus text whose counters move as containers run', async () => {
    const { base, fake: f } = await setup();
    const first = await get(`${base}/metrics`);
    expect(first.status).toBe(200);
    expect(first.type).toMatch(/^text\/plain; version=0\.0\.4/);
    const before = parseExposition(first.body);
    for (const name of [
      'queue_entries',
      'containers_running',
      'containers_longest_wait_time_seconds',
      'last_503_time',
      'at_quota',
      'lock_requests_total',
      'api_request_duration_seconds',
      'scheduler_command_duration_seconds',
      'scheduler_command_errors_total',
      'submissions_total',
      'jobs_vanished_total',
      'jobs_finished_total',
      'queue_status_age_seconds',
    ]) {
      expect(before.types.has(`arvados_dispatch_${name}`)).toBe(true);
    }
    expect(before.types.get('arvados_dispatch_lock_requests_total')).toBe('counter');
    expect(before.types.get('arvados_dispatch_api_request_duration_seconds')).toBe('histogram');
    expect(before.value('process_cpu_user_seconds_total')).toBeGreaterThanOrEqual(0);
    expect(before.value('arvados_dispatch_lock_requests_total', { result: 'ok' })).toBe(0);

    const cs = f.addContainers(3, { priority: 1 });
    const requestsBefore = before.samples.filter((x) => x.name === 'arvados_dispatch_api_request_duration_seconds_count').reduce((a, x) => a + x.value, 0);
    await waitFor(() => cs.every((c) => f.container(c.uuid)?.state === 'Running'), 'all running');
    const during = await waitFor(async () => {
      const m = parseExposition((await get(`${base}/metrics`)).body);
      return m.value('arvados_dispatch_containers_running') === 3 && m;
    }, 'three running in the metrics');
    expect(during.value('arvados_dispatch_queue_entries', { state: 'Running' })).toBe(3);
    expect(during.value('arvados_dispatch_lock_requests_total', { result: 'ok' })).toBe(3);
    const requestsDuring = during.samples.filter((x) => x.name === 'arvados_dispatch_api_request_duration_seconds_count').reduce((a, x) => a + x.value, 0);
    expect(requestsDuring).toBeGreaterThan(requestsBefore);
    expect(during.value('arvados_dispatch_api_request_duration_seconds_count', { method: 'POST' })).toBeGreaterThanOrEqual(3);

    // A lock refused because another dispatcher got there first, and an overloaded API.
    f.override('containers.lock', { status: 422, body: { errors: ['#<ArgumentError: cannot lock in state Locked>'] }, times: 1 });
    f.override('containers.list', { status: 503, body: { errors: ['busy'] }, times: 1 });
    const late = f.addContainer({ priority: 1 });
    const moved = await waitFor(async () => {
      const m = parseExposition((await get(`${base}/metrics`)).body);
      return (m.value('arvados_dispatch_lock_requests_total', { result: 'conflict' }) ?? 0) >= 1 && (m.value('arvados_dispatch_last_503_time') ?? 0) > 0 && m;
    }, 'a conflict and a 503 in the metrics');
    expect(moved.value('arvados_dispatch_last_503_time')! * 1000).toBeGreaterThan(Date.now() - 60_000);
    await waitFor(() => f.container(late.uuid)?.state === 'Running', 'the late one running after all');
    cs.push(late);

    for (const c of cs) f.completeContainer(c.uuid);
    const after = await waitFor(async () => {
      const m = parseExposition((await get(`${base}/metrics`)).body);
      return m.value('arvados_dispatch_jobs_finished_total', { reason: 'complete' }) === 4 && m;
    }, 'four finished in the metrics');
    expect(after.value('arvados_dispatch_containers_running')).toBe(0);
    expect(after.value('arvados_dispatch_queue_status_age_seconds')).toBeLessThan(60);
  });
});

describe('management listener limits (issue 18 item 7)', () => {
  it('bounds connections and closes idle unauthenticated ones, then still serves', async () => {
    const dispatch = { entries: () => [], kill: async () => 'none' as const };
    const s = await startManagementServer({
      listen: [{ host: '127.0.0.1', port: 0 }],
      token: TOKEN,
      health: new HealthMonitor(),
      metrics: new DispatchMetrics({ processMetrics: false }),
      dispatch,
      maxConnections: 4,
      idleTimeout: 300,
    });
    try {
      const port = Number(s.address.split(':').at(-1));
      const closed: number[] = [];
      const sockets = await Promise.all(
        Array.from({ length: 10 }, (_, i) => new Promise<Socket>((resolve) => {
          const sock = connect(port, '127.0.0.1', () => resolve(sock));
          sock.on('close', () => closed.push(i));
          sock.on('error', () => {});
          // Read what the server sends before closing: an idle connection is
          // closed either bare (the idle timeout) or after a 408 (Node's
          // headersTimeout check, whichever of the two timers runs first),
          // and a socket holding unread data never emits 'close'.
          sock.resume();
        })),
      );
      // Beyond the limit, connections are closed as they arrive.
      await waitFor(() => closed.length >= 6, 'the connections over the limit closed', 3_000);
      // The rest, idle and unauthenticated, after the idle timeout.
      await waitFor(() => closed.length === 10, 'the idle connections closed', 5_000);
      for (const sock of sockets) sock.destroy();
      const ok = await get(`http://${s.address}/_health/ping`);
      expect(ok.status).toBe(200);
    } finally {
      await s.close();
    }
  });
});
