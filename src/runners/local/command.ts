/**
 * What crunch-run is started with: its argv and its environment. The token
 * goes into the environment only, never onto the command line, and nothing
 * of the dispatcher's own environment is passed on unless asked for.
 *
 * @module
 */
import { createHmac } from 'node:crypto';
import { isContainerUuid } from '../../uuid.js';
import type { Allocation } from './resources.js';

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

/** Everything {@link crunchRunCommand} needs. */
export interface CommandSpec {
  command: string;
  /** Put between the command and the UUID. */
  args: readonly string[];
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
  credentials: { ARVADOS_API_HOST: string; ARVADOS_API_TOKEN: string; ARVADOS_API_HOST_INSECURE: string },
  gpus?: Pick<Allocation, 'gpuStack' | 'gpuIds'>,
): { argv: string[]; env: Record<string, string> } {
  if (!isContainerUuid(uuid)) throw new TypeError(`not a container UUID: ${JSON.stringify(uuid)}`);
  const env: Record<string, string> = {};
  if (spec.processEnv.PATH !== undefined) env.PATH = spec.processEnv.PATH;
  if (spec.processEnv.TMPDIR) env.TMPDIR = spec.processEnv.TMPDIR;
  for (const name of spec.envPass) {
    const v = spec.processEnv[name];
    if (v !== undefined) env[name] = v;
  }
  Object.assign(env, spec.env);
  env.ARVADOS_API_HOST = credentials.ARVADOS_API_HOST;
  env.ARVADOS_API_TOKEN = credentials.ARVADOS_API_TOKEN;
  env.ARVADOS_API_HOST_INSECURE = credentials.ARVADOS_API_HOST_INSECURE;
  if (spec.systemRootToken) env.GatewayAuthSecret = gatewayAuthSecret(spec.systemRootToken, uuid);
  if (gpus && gpus.gpuIds.length > 0) {
    env[gpus.gpuStack === 'rocm' ? 'AMD_VISIBLE_DEVICES' : 'CUDA_VISIBLE_DEVICES'] = gpus.gpuIds.join(',');
  }
  return { argv: [spec.command, ...spec.args, uuid], env };
}
