/**
 * Arvados' documented default for every cluster config key this program
 * reads (`lib/config/config.default.yml` of Arvados, whose values the Go
 * services use for any key a site's `/etc/arvados/config.yml` leaves out).
 * The values are recorded here as facts, in the form a flag takes them; the
 * AGPL file itself is not copied. A key whose default is empty ("not set")
 * is listed with `undefined`.
 *
 * These defaults apply only when a cluster config file is read: without
 * one, the flags' own defaults (the `--help` text) hold.
 *
 * @module
 */
import type { ClusterConfig, ConfigValue } from './config.js';
import { CONFIG_KEYS, valuesFor } from './config.js';

/** A default in flag form: a string (number, duration, size), a list, or a boolean; undefined: not set. */
export type ConfigDefault = string | readonly string[] | boolean | undefined;

/**
 * The upstream default of each key of `CONFIG_KEYS`, by key (below
 * `Clusters.<id>`). A unit test checks that every key read is here and
 * holds upstream's value.
 */
export const ARVADOS_DEFAULTS: Readonly<Record<string, ConfigDefault>> = Object.freeze({
  'Services.Controller.ExternalURL': undefined,
  SystemRootToken: undefined,
  'TLS.Insecure': false,
  ManagementToken: undefined,
  'TLS.Certificate': undefined,
  'TLS.Key': undefined,
  'Services.DispatchSLURM.InternalURLs': undefined,
  'Services.DispatchLSF.InternalURLs': undefined,
  'API.MaxItemsPerResponse': '1000',
  'Containers.CloudVMs.PollInterval': '10s',
  'Containers.MinRetryPeriod': '0s',
  'Containers.CrunchRunCommand': 'crunch-run',
  'Containers.CrunchRunArgumentsList': [],
  'Containers.RuntimeEngine': 'docker',
  'Containers.ReserveExtraRAM': '550MiB',
  'Containers.SLURM.SbatchArgumentsList': ['--job-name=%U', '--mem=%M', '--cpus-per-task=%C', '--tmp=%T', '--partition=%P'],
  'Containers.SLURM.SbatchGPUArgumentsList': ['--gpus=%G'],
  'Containers.SLURM.SbatchEnvironmentVariables': [],
  'Containers.SLURM.PrioritySpread': '0',
  'Containers.LSF.BsubSudoUser': 'crunch',
  'Containers.LSF.BsubArgumentsList': [
    '-o', '/tmp/crunch-run.%%J.out',
    '-e', '/tmp/crunch-run.%%J.err',
    '-J', '%U',
    '-n', '%C',
    '-D', '%MMB',
    '-R', 'rusage[mem=%MMB:tmp=%TMB] span[hosts=1]',
    '-R', 'select[mem>=%MMB]',
    '-R', 'select[tmp>=%TMB]',
    '-R', 'select[ncpus>=%C]',
    '-We', '%W',
  ],
  'Containers.LSF.BsubGPUArguments': ['-gpu', 'num=%G'],
  'Containers.LSF.MaxRunTimeOverhead': '5m',
  'Containers.LSF.MaxRunTimeDefault': '0s',
});

/**
 * The config values for `command` by flag name (see `valuesFor`), with
 * Arvados' default standing in for every key the file leaves out (a key
 * given empty, such as `BsubSudoUser: ""`, stays empty). A value
 * from a default names its key as `Clusters.<id>.<key> (Arvados default)`,
 * so a message about it says where it came from.
 */
export function valuesWithDefaults(config: ClusterConfig, command: string): Map<string, ConfigValue> {
  const out = valuesFor(config, command);
  for (const spec of CONFIG_KEYS) {
    if (spec.commands && !spec.commands.includes(command)) continue;
    if (out.has(spec.flag) || config.present?.has(spec.key)) continue;
    const d = ARVADOS_DEFAULTS[spec.key];
    if (d === undefined) continue;
    // An empty list is "nothing to add": the same as not set.
    if (Array.isArray(d) && d.length === 0) continue;
    out.set(spec.flag, { value: Array.isArray(d) ? [...(d as string[])] : (d as string | boolean), key: `Clusters.${config.clusterId}.${spec.key} (Arvados default)` });
  }
  return out;
}
