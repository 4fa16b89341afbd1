/**
 * How crunch-run is launched, for every runner (local and each batch
 * system): its argv and the environment it gets from the dispatcher,
 * including `GatewayAuthSecret`. The token goes into the environment only,
 * never onto the command line, and nothing of the dispatcher's own
 * environment is passed on unless asked for.
 *
 * @module
 */
import { createHmac } from 'node:crypto';
import { isContainerUuid } from '../uuid.js';
import type { Allocation } from './local/resources.js';

/** Variables crunch-run gets from the runner itself; `env` and `envPass` cannot set them. */
export const RESERVED_ENV: readonly string[] = Object.freeze([
  'ARVADOS_API_HOST',
  'ARVADOS_API_TOKEN',
  'ARVADOS_API_HOST_INSECURE',
  'GatewayAuthSecret',
  'CUDA_VISIBLE_DEVICES',
  'AMD_VISIBLE_DEVICES',
]);

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The secret crunch-run's container gateway accepts, as Arvados computes it
 * (the cloud and local dispatchers and the controller agree on it, so the
 * controller can reach the gateway): hex HMAC-SHA256 of the container UUID,
 * keyed by the cluster's `SystemRootToken`.
 */
export function gatewayAuthSecret(systemRootToken: string, containerUuid: string): string {
  return createHmac('sha256', systemRootToken).update(containerUuid).digest('hex');
}

/** Checks `env` / `envPass` options; throws a TypeError naming the bad entry. */
export function checkEnvOptions(env: Readonly<Record<string, string>>, envPass: readonly string[]): void {
  const check = (name: string, where: string): void => {
    if (!ENV_NAME.test(name)) throw new TypeError(`${where}: ${JSON.stringify(name)} is not an environment variable name`);
    if (RESERVED_ENV.includes(name)) throw new TypeError(`${where}: ${name} is set by the runner and cannot be given`);
  };
  for (const [name, value] of Object.entries(env)) {
    check(name, 'env');
    if (typeof value !== 'string' || value.includes('\0')) throw new TypeError(`env: the value of ${name} must be a string without NUL characters`);
  }
  if (!Array.isArray(envPass)) throw new TypeError('envPass must be an array of variable names');
  for (const name of envPass) check(String(name), 'envPass');
}

/** The API credentials crunch-run gets in its environment. */
export interface CrunchRunCredentials {
  ARVADOS_API_HOST: string;
  ARVADOS_API_TOKEN: string;
  ARVADOS_API_HOST_INSECURE: string;
}

/**
 * crunch-run's argv for one container, in the Go dispatchers' order: the
 * command, the extra arguments, `--runtime-engine=E` when an engine is set,
 * then the UUID.
 *
 * @throws TypeError if `uuid` is not a container UUID.
 */
export function crunchRunArgv(command: string, args: readonly string[], uuid: string, runtimeEngine?: string): string[] {
  if (!isContainerUuid(uuid)) throw new TypeError(`not a container UUID: ${JSON.stringify(uuid)}`);
  return [command, ...args, ...(runtimeEngine ? [`--runtime-engine=${runtimeEngine}`] : []), uuid];
}

/**
 * The variables the runner itself sets for crunch-run, which nothing else
 * may override: the API credentials, `GatewayAuthSecret` when a system root
 * token is given (never keyed by any other token: the controller computes
 * it from the SystemRootToken), and the allocated GPUs.
 */
export function crunchRunSecrets(
  uuid: string,
  credentials: CrunchRunCredentials,
  systemRootToken: string | undefined,
  gpus?: Pick<Allocation, 'gpuStack' | 'gpuIds'>,
): Record<string, string> {
  const env: Record<string, string> = {
    ARVADOS_API_HOST: credentials.ARVADOS_API_HOST,
    ARVADOS_API_TOKEN: credentials.ARVADOS_API_TOKEN,
    ARVADOS_API_HOST_INSECURE: credentials.ARVADOS_API_HOST_INSECURE,
  };
  if (systemRootToken) env.GatewayAuthSecret = gatewayAuthSecret(systemRootToken, uuid);
  if (gpus && gpus.gpuIds.length > 0) {
    env[gpus.gpuStack === 'rocm' ? 'AMD_VISIBLE_DEVICES' : 'CUDA_VISIBLE_DEVICES'] = gpus.gpuIds.join(',');
  }
  return env;
}

/** Checks a `systemRootToken` option: absent, or a non-empty string. */
export function checkSystemRootToken(token: unknown): void {
  if (token !== undefined && (typeof token !== 'string' || token === '')) throw new TypeError('systemRootToken must be a non-empty string');
}

/** Everything {@link crunchRunCommand} needs. */
export interface CommandSpec {
  command: string;
  /** Put between the command and the UUID. */
  args: readonly string[];
  /** Passed as `--runtime-engine=E` after `args`. */
  runtimeEngine?: string;
  /** Where PATH, TMPDIR and `envPass` values come from. */
  processEnv: NodeJS.ProcessEnv;
  env: Readonly<Record<string, string>>;
  envPass: readonly string[];
  systemRootToken?: string;
}

/**
 * argv and environment for one container: PATH and TMPDIR (if set), the
 * `envPass` variables that are set, `env`, then what the runner sets itself
 * (API credentials, `GatewayAuthSecret` when a system root token is
 * configured, the allocated GPUs), which nothing can override.
 */
export function crunchRunCommand(
  spec: CommandSpec,
  uuid: string,
  credentials: CrunchRunCredentials,
  gpus?: Pick<Allocation, 'gpuStack' | 'gpuIds'>,
): { argv: string[]; env: Record<string, string> } {
  const argv = crunchRunArgv(spec.command, spec.args, uuid, spec.runtimeEngine);
  const env: Record<string, string> = {};
  if (spec.processEnv.PATH !== undefined) env.PATH = spec.processEnv.PATH;
  if (spec.processEnv.TMPDIR) env.TMPDIR = spec.processEnv.TMPDIR;
  for (const name of spec.envPass) {
    const v = spec.processEnv[name];
    if (v !== undefined) env[name] = v;
  }
  Object.assign(env, spec.env, crunchRunSecrets(uuid, credentials, spec.systemRootToken, gpus));
  return { argv, env };
}
