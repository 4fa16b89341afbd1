/**
 * What the dispatching commands (`local`, `slurm`) share: the API client
 * from the environment, and the Dispatcher settings of their flags.
 *
 * @module
 */
import { ArvadosClient } from '../client/client.js';
import { ArvadosConfigError } from '../client/errors.js';
import type { DispatcherOptions } from '../dispatcher/dispatcher.js';
import type { Options } from './args.js';
import { CliError } from './errors.js';
import type { Output } from './output.js';

/** The client from ARVADOS_* / settings.conf; its token is masked in all output from now on. */
export function apiClientFromEnv(out: Output): ArvadosClient {
  let client: ArvadosClient;
  try {
    client = ArvadosClient.fromEnv();
  } catch (err) {
    if (err instanceof ArvadosConfigError) throw new CliError(err.message);
    throw err;
  }
  out.addSecret(client.credentialsEnv().ARVADOS_API_TOKEN);
  return client;
}

/** The Dispatcher settings of the `DISPATCHER_OPTIONS` flags. */
export function dispatcherSettings(opts: Options): Required<Pick<DispatcherOptions, 'pollInterval' | 'batchSize' | 'minRetryPeriod' | 'lockConcurrency'>> {
  return {
    pollInterval: opts.duration('poll-interval', 10_000, 1),
    batchSize: opts.integer('batch-size', 100),
    minRetryPeriod: opts.duration('min-retry-period', 0),
    lockConcurrency: opts.integer('lock-concurrency', 8),
  };
}
