/**
 * What the dispatching commands (`local`, `slurm`, `lsf`, `sge`) share: the
 * API client (cluster config, else environment and settings.conf), a
 * quick reachability check, and the Dispatcher settings of their flags.
 *
 * @module
 */
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import { ArvadosClient } from '../client/client.js';
import { ArvadosConfigError } from '../client/errors.js';
import type { DispatcherOptions } from '../dispatcher/dispatcher.js';
import type { Options } from './args.js';
import { clusterSections } from './cluster-sections.js';
import { resolveCredentials, type ResolvedCredentials } from './credentials.js';
import { CliError, UsageError } from './errors.js';
import type { Output } from './output.js';

/**
 * The API client from credentials chosen by {@link resolveCredentials}
 * (the cluster config, else ARVADOS_API_* and settings.conf). Its token is
 * masked in all output from now on.
 */
export function apiClientFromEnv(out: Output, opts?: Options, env: NodeJS.ProcessEnv = process.env, resolved: ResolvedCredentials = resolveCredentials(opts, env)): ArvadosClient {
  let client: ArvadosClient;
  try {
    client = ArvadosClient.fromEnv(resolved.env);
  } catch (err) {
    if (err instanceof ArvadosConfigError) throw new CliError(err.message);
    throw err;
  }
  out.addSecret(client.credentialsEnv().ARVADOS_API_TOKEN);
  return client;
}

/** How long the reachability check may take before the client's own retries take over. */
const CONNECT_CHECK_TIMEOUT = 5_000;

/**
 * Fails at once, with one line, when the API host cannot be resolved or
 * refuses connections: those do not heal within the client's retries, and
 * an operator who mistyped a host name wants to know now. A timeout or
 * anything else is left to the client, which retries.
 */
export async function checkReachable(client: ArvadosClient): Promise<void> {
  const url = new URL(client.baseUrl);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port || (url.protocol === 'http:' ? 80 : 443));
  let address: string;
  try {
    address = (await lookup(host)).address;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTFOUND' || code === 'EAI_NONAME' || code === 'EAI_FAIL') {
      throw new CliError(`cannot resolve the API host name "${host}" (check ARVADOS_API_HOST or Services.Controller.ExternalURL)`);
    }
    return;
  }
  await new Promise<void>((resolve, reject) => {
    const socket = net.connect({ host: address, port });
    const done = (err?: CliError): void => {
      socket.destroy();
      if (err) reject(err);
      else resolve();
    };
    socket.setTimeout(CONNECT_CHECK_TIMEOUT, () => done());
    socket.once('connect', () => done());
    socket.once('error', (err: NodeJS.ErrnoException) =>
      done(err.code === 'ECONNREFUSED' ? new CliError(`cannot connect to the API server at ${url.host}: connection refused`) : undefined),
    );
  });
}

/**
 * `--max-jobs` of the batch-system commands (`slurm`, `lsf`, `sge`) when not
 * given. Without a cap, one dispatcher would lock every queued container at
 * once (5,000 queued: 5,000 Locked, out of reach of any other dispatcher, and
 * as many jobs in the scheduler's queue, where per-user limits then refuse
 * them). Nextflow caps each pipeline at 100 jobs (`executor.queueSize`); a
 * dispatcher serves a whole cluster's workflows, so ten times that, a tenth of
 * Slurm's default `MaxJobCount` (10,000 jobs for the whole controller), which
 * fills in under a minute at the default `--submit-rate`. `local` needs none:
 * its resource pool is its cap.
 */
export const BATCH_MAX_JOBS = 1000;

/** Commands whose runner is a batch system (they get {@link BATCH_MAX_JOBS}). */
const BATCH_COMMANDS = new Set(['slurm', 'lsf', 'sge']);

/** The Dispatcher settings of the `DISPATCHER_OPTIONS` flags (and their config keys). */
export function dispatcherSettings(
  opts: Options,
): Required<Pick<DispatcherOptions, 'pollInterval' | 'batchSize' | 'minRetryPeriod' | 'lockConcurrency' | 'events'>> & Pick<DispatcherOptions, 'maxJobs' | 'supervisorFraction'> {
  const maxJobs = BATCH_COMMANDS.has(opts.command) ? opts.integer('max-jobs', BATCH_MAX_JOBS, 1) : opts.integer('max-jobs', undefined, 1);
  const supervisorFraction = supervisorFractionOf(opts);
  return {
    ...(supervisorFraction !== undefined ? { supervisorFraction } : {}),
    pollInterval: opts.duration('poll-interval', 10_000, 1),
    batchSize: opts.integer('batch-size', 1000),
    minRetryPeriod: opts.duration('min-retry-period', 0),
    lockConcurrency: opts.integer('lock-concurrency', 8),
    events: !opts.flag('no-events'),
    ...(maxJobs !== undefined ? { maxJobs } : {}),
  };
}

/**
 * `--supervisor-fraction`, else `Containers.CloudVMs.SupervisorFraction` of
 * the cluster config; undefined when neither is set.
 *
 * @throws UsageError for a value that is not a number between 0 and 1.
 */
export function supervisorFractionOf(opts: Options): number | undefined {
  const text = opts.string('supervisor-fraction');
  if (text === undefined) return clusterSections(opts.config).supervisorFraction;
  const f = Number(text);
  if (text.trim() === '' || !Number.isFinite(f) || f < 0 || f > 1) {
    throw new UsageError(`--supervisor-fraction: "${text}" is not a number between 0 and 1`);
  }
  return f;
}
