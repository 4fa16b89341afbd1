/* eslint-disable @typescript-eslint/no-explicit-any -- the tests edit parsed YAML documents of any shape */
// Arvados' defaults for every config key read: the table against the values
// of Arvados' lib/config/config.default.yml (written out here by hand from
// upstream, as the values a Go service uses for a key the site's file leaves
// out), and how they fill in what a config file leaves out.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { parse, stringify } from 'yaml';
import { DISPATCHER_OPTIONS, parseCommandLine, type OptionTable } from '../../src/cli/args.js';
import { ARVADOS_DEFAULTS } from '../../src/cli/config-defaults.js';
import { CONFIG_KEYS } from '../../src/cli/config.js';
import { dispatcherSettings } from '../../src/cli/dispatching.js';
import { DEFAULT_BSUB_ARGUMENTS, DEFAULT_BSUB_GPU_ARGUMENTS, DEFAULT_MAX_RUN_TIME_OVERHEAD } from '../../src/runners/batch/lsf/template.js';
import { DEFAULT_SBATCH_ARGUMENTS, DEFAULT_SBATCH_GPU_ARGUMENTS } from '../../src/runners/batch/slurm/adapter.js';
import { DEFAULT_RESERVE_EXTRA_RAM } from '../../src/runners/defaults.js';

/**
 * config.default.yml at Arvados HEAD (2026-08), key by key, in flag form:
 * "" (not set) is undefined, `{}` / `[]` / `SAMPLE`-only maps are [].
 */
const UPSTREAM: Record<string, unknown> = {
  'Services.Controller.ExternalURL': undefined, // ExternalURL: ""
  SystemRootToken: undefined, // SystemRootToken: ""
  'TLS.Insecure': false,
  'TLS.Certificate': undefined, // Certificate: ""
  'TLS.Key': undefined, // Key: ""
  ManagementToken: undefined, // ManagementToken: ""
  'Services.DispatchSLURM.InternalURLs': undefined, // InternalURLs: {}
  'Services.DispatchLSF.InternalURLs': undefined, // InternalURLs: {}
  'API.MaxItemsPerResponse': '1000',
  'Containers.CloudVMs.PollInterval': '10s',
  'Containers.MinRetryPeriod': '0s',
  'Containers.CrunchRunCommand': 'crunch-run',
  'Containers.CrunchRunArgumentsList': [],
  'Containers.RuntimeEngine': 'docker',
  'Containers.ReserveExtraRAM': '550MiB',
  'Containers.SLURM.PrioritySpread': '0',
  'Containers.SLURM.SbatchArgumentsList': ['--job-name=%U', '--mem=%M', '--cpus-per-task=%C', '--tmp=%T', '--partition=%P'],
  'Containers.SLURM.SbatchGPUArgumentsList': ['--gpus=%G'],
  'Containers.SLURM.SbatchEnvironmentVariables': [], // SAMPLE: "" only
  'Containers.LSF.BsubArgumentsList': [
    '-o', '/tmp/crunch-run.%%J.out', '-e', '/tmp/crunch-run.%%J.err', '-J', '%U', '-n', '%C', '-D', '%MMB',
    '-R', 'rusage[mem=%MMB:tmp=%TMB] span[hosts=1]', '-R', 'select[mem>=%MMB]', '-R', 'select[tmp>=%TMB]', '-R', 'select[ncpus>=%C]',
    '-We', '%W',
  ],
  'Containers.LSF.BsubGPUArguments': ['-gpu', 'num=%G'],
  'Containers.LSF.BsubSudoUser': 'crunch',
  'Containers.LSF.MaxRunTimeOverhead': '5m',
  'Containers.LSF.MaxRunTimeDefault': '0s', // MaxRunTimeDefault: 0
};

const dir = mkdtempSync(join(tmpdir(), 'arvados-dispatch-defaults-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TABLE: OptionTable = {
  ...DISPATCHER_OPTIONS,
  'crunch-run-command': { type: 'string', help: '' },
  'crunch-run-arg': { type: 'string', multiple: true, help: '' },
  'runtime-engine': { type: 'string', help: '' },
  'reserve-extra-ram': { type: 'string', help: '' },
  'sbatch-arg': { type: 'string', multiple: true, help: '' },
  'sbatch-gpu-arg': { type: 'string', multiple: true, help: '' },
  'sbatch-env': { type: 'string', multiple: true, help: '' },
  'priority-spread': { type: 'string', help: '' },
  'bsub-sudo-user': { type: 'string', help: '' },
  'bsub-arg': { type: 'string', multiple: true, help: '' },
  'max-run-time-overhead': { type: 'string', help: '' },
  'max-run-time-default': { type: 'string', help: '' },
  help: { type: 'boolean', help: '' },
};

let n = 0;
function write(doc: unknown): string {
  const path = join(dir, `config-${++n}.yml`);
  writeFileSync(path, stringify(doc));
  return path;
}

/** A config with nothing but a cluster id, the controller and the token. */
function minimal(extra: Record<string, any> = {}): string {
  return write({ Clusters: { zzzzz: { SystemRootToken: 'root', Services: { Controller: { ExternalURL: 'https://zzzzz.example' } }, ...extra } } });
}

describe("Arvados' config defaults", () => {
  it('the table holds upstream values for exactly the keys read', () => {
    expect(Object.keys(ARVADOS_DEFAULTS).sort()).toEqual(CONFIG_KEYS.map((k) => k.key).sort());
    for (const key of Object.keys(UPSTREAM)) expect([key, ARVADOS_DEFAULTS[key]]).toEqual([key, UPSTREAM[key]]);
    expect(Object.keys(UPSTREAM).sort()).toEqual(Object.keys(ARVADOS_DEFAULTS).sort());
  });

  it("agree with the runners' own built-in defaults, so there is one value per setting", () => {
    expect(ARVADOS_DEFAULTS['Containers.SLURM.SbatchArgumentsList']).toEqual(DEFAULT_SBATCH_ARGUMENTS);
    expect(ARVADOS_DEFAULTS['Containers.SLURM.SbatchGPUArgumentsList']).toEqual(DEFAULT_SBATCH_GPU_ARGUMENTS);
    expect(ARVADOS_DEFAULTS['Containers.LSF.BsubArgumentsList']).toEqual(DEFAULT_BSUB_ARGUMENTS);
    expect(ARVADOS_DEFAULTS['Containers.LSF.BsubGPUArguments']).toEqual(DEFAULT_BSUB_GPU_ARGUMENTS);
    expect(ARVADOS_DEFAULTS['Containers.LSF.MaxRunTimeOverhead']).toBe('5m');
    expect(DEFAULT_MAX_RUN_TIME_OVERHEAD).toBe(5 * 60_000);
    expect(DEFAULT_RESERVE_EXTRA_RAM).toBe(550 * 2 ** 20);
  });

  it('fill in every key a config file leaves out', () => {
    const slurm = parseCommandLine(['--config', minimal()], TABLE, 'slurm');
    const s = dispatcherSettings(slurm);
    expect(s.batchSize).toBe(1000);
    expect(s.pollInterval).toBe(10_000);
    expect(s.minRetryPeriod).toBe(0);
    expect(slurm.string('crunch-run-command')).toBe('crunch-run');
    expect(slurm.string('runtime-engine')).toBe('docker');
    expect(slurm.size('reserve-extra-ram', undefined)).toBe(550 * 2 ** 20);
    expect(slurm.list('crunch-run-arg')).toEqual([]);
    expect(slurm.list('sbatch-arg')).toEqual(UPSTREAM['Containers.SLURM.SbatchArgumentsList']);
    expect(slurm.list('sbatch-gpu-arg')).toEqual(['--gpus=%G']);
    expect(slurm.list('sbatch-env')).toEqual([]);
    expect(slurm.integer('priority-spread', 10, 0)).toBe(0);
    const lsf = parseCommandLine(['--config', minimal()], TABLE, 'lsf');
    expect(lsf.string('bsub-sudo-user')).toBe('crunch');
    expect(lsf.list('bsub-arg')).toEqual(UPSTREAM['Containers.LSF.BsubArgumentsList']);
    expect(lsf.duration('max-run-time-overhead', 0)).toBe(300_000);
    expect(lsf.duration('max-run-time-default', 1)).toBe(0);
    // Not set upstream: nothing to listen on, no management token.
    expect(lsf.configValue('listen')).toBeUndefined();
  });

  it('a key given, even empty, is not replaced by the default', () => {
    const opts = parseCommandLine(['--config', minimal({ Containers: { LSF: { BsubSudoUser: '' }, RuntimeEngine: 'singularity' }, API: { MaxItemsPerResponse: 50 } })], TABLE, 'lsf');
    expect(opts.string('bsub-sudo-user')).toBeUndefined();
    expect(opts.string('runtime-engine')).toBe('singularity');
    expect(dispatcherSettings(opts).batchSize).toBe(50);
  });

  it('flags win over the defaults', () => {
    const opts = parseCommandLine(['--config', minimal(), '--batch-size', '7', '--runtime-engine', 'singularity'], TABLE, 'local');
    expect(dispatcherSettings(opts).batchSize).toBe(7);
    expect(opts.string('runtime-engine')).toBe('singularity');
  });

  it('a bad value from a default names the key as a default (never happens with upstream values, but says where it came from)', () => {
    const opts = parseCommandLine(['--config', minimal()], TABLE, 'local');
    expect(opts.configValue('batch-size')?.key).toBe('Clusters.zzzzz.API.MaxItemsPerResponse (Arvados default)');
  });

  it('without a config file, the flags keep their own defaults', () => {
    const opts = parseCommandLine([], TABLE, 'local', { HOME: '/nonexistent' });
    expect(opts.string('runtime-engine')).toBeUndefined();
    expect(dispatcherSettings(opts).batchSize).toBe(1000);
  });

  it('the fixture modelled on config.default.yml parses, with defaults behind it', () => {
    const doc = parse(readFileSync(new URL('../fixtures/config/cluster.yml', import.meta.url), 'utf8')) as Record<string, any>;
    delete doc.Clusters.zzzzz.Containers.RuntimeEngine;
    const opts = parseCommandLine(['--config', write(doc)], TABLE, 'slurm');
    expect(opts.string('runtime-engine')).toBe('docker');
    expect(opts.string('crunch-run-command')).toBe('/usr/bin/crunch-run');
  });
});
