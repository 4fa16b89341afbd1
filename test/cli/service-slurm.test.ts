/* eslint-disable @typescript-eslint/no-explicit-any -- the test edits a parsed YAML document of any shape */
// `arvados-dispatch slurm --config` as an operator starts it: everything
// from the cluster config (API, Containers.SLURM, the management listener
// from Services.DispatchSLURM.InternalURLs), against the real Slurm
// (scripts/slurm-up.sh); the scheduler's metrics move as a job runs.
import { spawn } from 'node:child_process';
import { X509Certificate, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as https from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from '@jest/globals';
import { parse, stringify } from 'yaml';
import { FakeArvados } from '../../src/testing/index.js';
import { built, spawnCli } from '../helpers/cli.js';
import { parseExposition } from '../helpers/prometheus.js';
import { execFileP } from '../helpers/exec.js';
import { cancelJobsNamed, slurmUnavailable } from '../helpers/slurm.js';
import { waitFor } from '../helpers/wait.js';

const STUB = fileURLToPath(new URL('../fixtures/slurm-crunch-run.mjs', import.meta.url));
const MGMT = 'mgmt-slurm-0123456789abcdefghijklmnopqrstuvwxyz';

const unavailable = built ? await slurmUnavailable() : 'dist/ is not built (npm test builds it)';

// Job names start with a random cluster id, so cleanup finds exactly ours.
const CLUSTER = `s${randomBytes(3).toString('hex').slice(0, 4)}`;
const home = mkdtempSync(join(tmpdir(), 'arvados-dispatch-home-'));
const out = mkdtempSync('/tmp/arvados-dispatch-service-slurm-');
afterAll(async () => {
  await cancelJobsNamed(CLUSTER);
  rmSync(home, { recursive: true, force: true });
  rmSync(out, { recursive: true, force: true });
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

(unavailable ? describe.skip : describe)('arvados-dispatch slurm as a service', () => {
  it('runs from the cluster config alone; health, metrics and the container list come from its InternalURL', async () => {
    const fake = await new FakeArvados({ clusterId: CLUSTER }).start();
    try {
      const port = await freePort();
      const doc = parse(readFileSync(new URL('../fixtures/config/cluster.yml', import.meta.url), 'utf8')) as Record<string, any>;
      const c = doc.Clusters.zzzzz;
      c.SystemRootToken = fake.rootToken.token;
      c.ManagementToken = MGMT;
      c.Services.Controller.ExternalURL = fake.url;
      c.Services.DispatchSLURM.InternalURLs = { [`http://127.0.0.1:${port}`]: {} };
      c.TLS.Insecure = true;
      c.Containers.CrunchRunCommand = process.execPath;
      c.Containers.CrunchRunArgumentsList = [STUB];
      c.Containers.CloudVMs.PollInterval = '200ms';
      c.Containers.SLURM.SbatchArgumentsList = ['--job-name=%U', '--mem=%M', '--cpus-per-task=%C'];
      c.Containers.SLURM.SbatchEnvironmentVariables = {};
      const config = join(home, 'config.yml');
      writeFileSync(config, stringify(doc));

      const x = fake.addContainer({ runtime_constraints: { ram: 64 * 2 ** 20, vcpus: 1 }, environment: { STUB_MODE: 'complete', STUB_RUN_MS: '200' } } as never);
      const cli = spawnCli(['slurm', '--config', config, '--squeue-interval', '200ms', '--job-output-dir', out, '--status-interval', '0'], { HOME: home });
      try {
        const base = `http://127.0.0.1:${port}`;
        await waitFor(() => cli.stdout().includes('management API on'), 'the listener', 30_000);
        const get = async (path: string): Promise<string> => (await fetch(`${base}${path}`, { headers: { Authorization: `Bearer ${MGMT}` } })).text();
        await waitFor(() => fake.container(x.uuid)?.state === 'Complete', 'Complete', 60_000);
        const m = await waitFor(async () => {
          const e = parseExposition(await get('/metrics'));
          return (e.value('arvados_dispatch_submissions_total', { result: 'ok' }) ?? 0) >= 1 && e;
        }, 'a submission in the metrics', 30_000);
        expect(m.value('arvados_dispatch_scheduler_command_duration_seconds_count', { command: 'sbatch', result: 'ok' })).toBeGreaterThanOrEqual(1);
        expect(m.value('arvados_dispatch_scheduler_command_duration_seconds_count', { command: 'squeue', result: 'ok' })).toBeGreaterThanOrEqual(1);
        expect(m.value('arvados_dispatch_queue_status_age_seconds')).toBeLessThan(30);
        // The job left the queue: its end is counted with the accounting's reason.
        await waitFor(async () => {
          const e = parseExposition(await get('/metrics'));
          return e.samples.filter((s) => s.name === 'arvados_dispatch_jobs_finished_total').reduce((a, s) => a + s.value, 0) >= 1;
        }, 'the job counted as finished', 30_000);
        expect(JSON.parse(await get('/_health/ping'))).toEqual({ health: 'OK' });
        expect(JSON.parse(await get('/arvados/v1/dispatch/containers'))).toHaveProperty('items');
        cli.child.kill('SIGTERM');
        expect((await cli.exited).code).toBe(0);
        expect(cli.stdout()).toMatch(new RegExp(`${x.uuid} submitted to Slurm as job \\d+`));
        expect(cli.stdout() + cli.stderr()).not.toContain(fake.rootToken.token);
        expect(cli.stdout() + cli.stderr()).not.toContain(MGMT);
      } finally {
        if (cli.child.exitCode === null) cli.child.kill('SIGKILL');
      }
    } finally {
      await fake.stop();
    }
  }, 120_000);

  it('containers/kill on the management API cancels the Slurm job at once and the Running container with the reason', async () => {
    const fake = await new FakeArvados({ clusterId: CLUSTER }).start();
    try {
      const port = await freePort();
      const doc = parse(readFileSync(new URL('../fixtures/config/cluster.yml', import.meta.url), 'utf8')) as Record<string, any>;
      const c = doc.Clusters.zzzzz;
      c.SystemRootToken = fake.rootToken.token;
      c.ManagementToken = MGMT;
      c.Services.Controller.ExternalURL = fake.url;
      c.Services.DispatchSLURM.InternalURLs = { [`http://127.0.0.1:${port}`]: {} };
      c.TLS.Insecure = true;
      c.Containers.CrunchRunCommand = process.execPath;
      c.Containers.CrunchRunArgumentsList = [STUB];
      c.Containers.CloudVMs.PollInterval = '200ms';
      c.Containers.SLURM.SbatchArgumentsList = ['--job-name=%U', '--mem=%M', '--cpus-per-task=%C'];
      c.Containers.SLURM.SbatchEnvironmentVariables = {};
      const config = join(home, 'config-kill.yml');
      writeFileSync(config, stringify(doc));

      const x = fake.addContainer({ runtime_constraints: { ram: 64 * 2 ** 20, vcpus: 1 }, environment: { STUB_MODE: 'hang' } } as never);
      const cli = spawnCli(['slurm', '--config', config, '--squeue-interval', '200ms', '--job-output-dir', out, '--status-interval', '0'], { HOME: home });
      const jobOf = (): Promise<string | undefined> =>
        new Promise((resolve) => {
          const q = spawn('squeue', ['--noheader', '--format=%i %j']);
          let text = '';
          q.stdout.on('data', (b: Buffer) => (text += b.toString()));
          q.on('close', () => resolve(text.split('\n').find((l) => l.split(' ')[1] === x.uuid)?.split(' ')[0]));
          q.on('error', () => resolve(undefined));
        });
      try {
        await waitFor(() => cli.stdout().includes('management API on'), 'the listener', 30_000);
        await waitFor(() => fake.container(x.uuid)?.state === 'Running', 'Running', 60_000);
        expect(await jobOf()).toBeDefined();
        const r = await fetch(`http://127.0.0.1:${port}/arvados/v1/dispatch/containers/kill?container_uuid=${x.uuid}&reason=stuck`, { method: 'POST', headers: { Authorization: `Bearer ${MGMT}` } });
        expect(r.status).toBe(200);
        await waitFor(() => fake.container(x.uuid)?.state === 'Cancelled', 'Cancelled', 30_000);
        expect(JSON.stringify(fake.container(x.uuid)?.runtime_status ?? {})).toContain('stuck');
        await waitFor(async () => (await jobOf()) === undefined, 'the Slurm job gone', 30_000);
        cli.child.kill('SIGTERM');
        expect((await cli.exited).code).toBe(0);
      } finally {
        if (cli.child.exitCode === null) cli.child.kill('SIGKILL');
      }
    } finally {
      await fake.stop();
    }
  }, 120_000);

  it('a Go config: InternalURLs without ManagementToken starts, 404 "disabled"; an https InternalURL serves TLS with TLS.Certificate', async () => {
    const fake = await new FakeArvados({ clusterId: CLUSTER }).start();
    try {
      const tls = mkdtempSync(join(tmpdir(), 'arvados-dispatch-tls-'));
      await execFileP('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
        '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(tls, 'key.pem'), '-out', join(tls, 'cert.pem')]);
      const cert = readFileSync(join(tls, 'cert.pem'), 'utf8');
      const start = async (edit: (c: Record<string, any>, port: number) => void): Promise<{ port: number; cli: ReturnType<typeof spawnCli> }> => {
        const port = await freePort();
        const doc = parse(readFileSync(new URL('../fixtures/config/cluster.yml', import.meta.url), 'utf8')) as Record<string, any>;
        const c = doc.Clusters.zzzzz;
        c.SystemRootToken = fake.rootToken.token;
        c.Services.Controller.ExternalURL = fake.url;
        c.TLS.Insecure = true;
        c.Containers.CloudVMs.PollInterval = '200ms';
        edit(c, port);
        const config = join(home, `config-${port}.yml`);
        writeFileSync(config, stringify(doc));
        const cli = spawnCli(['slurm', '--config', config, '--status-interval', '0'], { HOME: home });
        await waitFor(() => (cli.stdout().includes('management API on') && cli.stdout().includes('dispatching as token')) || cli.child.exitCode !== null, 'the listener', 30_000);
        return { port, cli };
      };
      const stop = async (cli: ReturnType<typeof spawnCli>): Promise<void> => {
        cli.child.kill('SIGTERM');
        expect([(await cli.exited).code, cli.stderr()]).toEqual([0, '']);
      };

      const plain = await start((c, port) => {
        c.ManagementToken = '';
        c.Services.DispatchSLURM.InternalURLs = { [`http://127.0.0.1:${port}`]: {} };
      });
      try {
        const r = await fetch(`http://127.0.0.1:${plain.port}/_health/ping`, { headers: { Authorization: `Bearer ${MGMT}` } });
        expect([r.status, await r.text()]).toEqual([404, 'disabled\n']);
        await stop(plain.cli);
      } finally {
        if (plain.cli.child.exitCode === null) plain.cli.child.kill('SIGKILL');
      }

      const secure = await start((c, port) => {
        c.ManagementToken = MGMT;
        c.TLS.Certificate = `file://${join(tls, 'cert.pem')}`;
        c.TLS.Key = join(tls, 'key.pem');
        c.Services.DispatchSLURM.InternalURLs = { [`https://127.0.0.1:${port}`]: {} };
      });
      try {
        expect(secure.cli.stdout()).toContain(`management API on https://127.0.0.1:${secure.port}/`);
        const answer = await new Promise<{ status?: number; body: string; fingerprint?: string }>((resolve, reject) => {
          https
            .get(`https://127.0.0.1:${secure.port}/_health/ping`, { ca: cert, agent: false, headers: { Authorization: `Bearer ${MGMT}` } }, (res) => {
              const fingerprint = (res.socket as TLSSocket | null)?.getPeerX509Certificate()?.fingerprint256;
              let body = '';
              res.on('data', (d: Buffer) => (body += d.toString()));
              res.on('end', () => resolve({ status: res.statusCode, body, fingerprint }));
            })
            .on('error', reject);
        });
        expect(answer).toEqual({ status: 200, body: '{"health":"OK"}\n', fingerprint: new X509Certificate(cert).fingerprint256 });
        await stop(secure.cli);
      } finally {
        if (secure.cli.child.exitCode === null) secure.cli.child.kill('SIGKILL');
        rmSync(tls, { recursive: true, force: true });
      }
    } finally {
      await fake.stop();
    }
  }, 120_000);
});
