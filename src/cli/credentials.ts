/**
 * Where the dispatching commands get the API host, token and TLS setting,
 * in the Go dispatchers' order: the cluster config
 * (`Services.Controller.ExternalURL`, `SystemRootToken`, `TLS.Insecure`)
 * when it names the controller or the token; otherwise, as a deprecated
 * fallback, the `ARVADOS_API_*` environment and
 * `$HOME/.config/arvados/settings.conf`. The config never mixes with the
 * environment: a site whose config is complete cannot be redirected by a
 * stray variable, and the GatewayAuthSecret is keyed by the token the
 * controller also uses.
 *
 * @module
 */
import type { Options } from './args.js';
import { API_HOST, API_INSECURE, API_TOKEN } from './config.js';
import { UsageError } from './errors.js';

/** The credentials chosen, and what the command should know about them. */
export interface ResolvedCredentials {
  /** The variables to build the client from (`ArvadosClient.fromEnv`). */
  env: NodeJS.ProcessEnv;
  /** `config`: from the cluster config; `environment`: ARVADOS_API_* / settings.conf. */
  source: 'config' | 'environment';
  /** The cluster's SystemRootToken, when the config gives one (GatewayAuthSecret is keyed by it). */
  systemRootToken?: string;
  /** Warnings to print once at startup. */
  warnings: string[];
}

const CREDENTIAL_VARS = ['ARVADOS_API_HOST', 'ARVADOS_API_TOKEN', 'ARVADOS_API_HOST_INSECURE'];

/**
 * Chooses the credentials for `opts` (see the module comment).
 *
 * @throws {@link UsageError} when the config names only one of the
 * controller's URL and the SystemRootToken.
 */
export function resolveCredentials(opts: Options | undefined, env: NodeJS.ProcessEnv = process.env): ResolvedCredentials {
  const str = (flag: string): string | undefined => {
    const v = opts?.configValue(flag)?.value;
    return typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined;
  };
  const host = str(API_HOST);
  const token = str(API_TOKEN);
  const config = opts?.config;
  const warnings: string[] = [];
  if (config && (host !== undefined || token !== undefined)) {
    if (host === undefined || token === undefined) {
      const missing = host === undefined ? 'Services.Controller.ExternalURL' : 'SystemRootToken';
      const given = host === undefined ? 'SystemRootToken' : 'Services.Controller.ExternalURL';
      throw new UsageError(`${config.path}: Clusters.${config.clusterId}.${missing} is not set (the config sets ${given}; set both)`);
    }
    const insecure = opts?.configValue(API_INSECURE)?.value === true;
    const out: NodeJS.ProcessEnv = {};
    // Everything but the credentials is kept (HOME is dropped: settings.conf must not fill anything in).
    for (const [k, v] of Object.entries(env)) if (!CREDENTIAL_VARS.includes(k) && k !== 'HOME') out[k] = v;
    Object.assign(out, { ARVADOS_API_HOST: host, ARVADOS_API_TOKEN: token, ARVADOS_API_HOST_INSECURE: insecure ? '1' : '0' });
    const ignored = CREDENTIAL_VARS.filter((k) => env[k] !== undefined && env[k]!.trim() !== '');
    if (ignored.length) warnings.push(`ignoring ${ignored.join(', ')}: the cluster config ${config.path} gives the API host and token`);
    return { env: out, source: 'config', systemRootToken: token, warnings };
  }
  if (config) {
    warnings.push(
      `the cluster config ${config.path} names neither Services.Controller.ExternalURL nor SystemRootToken: ` +
        'using ARVADOS_API_* / settings.conf (deprecated; set both in the config)',
    );
  }
  warnings.push(
    'no SystemRootToken is known (set it in the cluster config): crunch-run gets no GatewayAuthSecret the controller accepts, so container shell and live logs will not work',
  );
  return { env: { ...env }, source: 'environment', warnings };
}
