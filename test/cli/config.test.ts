/* eslint-disable @typescript-eslint/no-explicit-any -- the tests edit parsed YAML documents of any shape */
// The cluster config (a file modelled on Arvados' config.default.yml), its
// precedence against flags and the environment, and the Go flag spellings.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { parse, stringify } from 'yaml';
import { DISPATCHER_OPTIONS, parseCommandLine, parseSubmitRate, type OptionTable } from '../../src/cli/args.js';
import { CONFIG_KEYS, configPath, loadClusterConfig } from '../../src/cli/config.js';
import { resolveCredentials } from '../../src/cli/credentials.js';
import { dispatcherSettings } from '../../src/cli/dispatching.js';
import { UsageError } from '../../src/cli/errors.js';
import { goSpellings } from '../../src/cli/go-flags.js';

const FIXTURE = new URL('../fixtures/config/cluster.yml', import.meta.url);
const dir = mkdtempSync(join(tmpdir(), 'arvados-dispatch-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
/** Writes the fixture, changed by `edit` (which gets the `Clusters.zzzzz` mapping), and returns its path. */
function configFile(edit: (cluster: Record<string, any>, doc: Record<string, any>) => void = () => {}): string {
  const doc = parse(readFileSync(FIXTURE, 'utf8')) as Record<string, any>;
  edit(doc.Clusters.zzzzz, doc);
  const path = join(dir, `config-${++n}.yml`);
  writeFileSync(path, stringify(doc));
  return path;
}

const TABLE: OptionTable = {
  ...DISPATCHER_OPTIONS,
  'crunch-run-command': { type: 'string', help: '' },
  'crunch-run-arg': { type: 'string', multiple: true, help: '' },
  'runtime-engine': { type: 'string', help: '' },
  'reserve-extra-ram': { type: 'string', help: '' },
  'sbatch-arg': { type: 'string', multiple: true, help: '' },
  'sbatch-env': { type: 'string', multiple: true, help: '' },
  'priority-spread': { type: 'string', help: '' },
  'max-run-time-default': { type: 'string', help: '' },
  help: { type: 'boolean', help: '' },
};

function usageMessage(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return (err as Error).message;
  }
  throw new Error('expected a UsageError');
}

describe('loading the cluster config', () => {
  it('reads every key it maps, in the types and units Arvados writes them', () => {
    const path = configFile();
    const opts = parseCommandLine(['--config', path], TABLE, 'slurm');
    expect(opts.config?.clusterId).toBe('zzzzz');
    expect(opts.duration('poll-interval', 1)).toBe(10_000);
    expect(opts.duration('min-retry-period', 0)).toBe(30_000);
    expect(opts.integer('batch-size', 100)).toBe(1000);
    expect(opts.string('crunch-run-command')).toBe('/usr/bin/crunch-run');
    expect(opts.list('crunch-run-arg')).toEqual(['--cgroup-parent-subsystem=memory']);
    expect(opts.string('runtime-engine')).toBe('singularity');
    expect(opts.size('reserve-extra-ram', undefined)).toBe(256 * 2 ** 20);
    expect(opts.list('sbatch-arg')).toEqual(['--job-name=%U', '--mem=%M', '--cpus-per-task=%C', '--tmp=%T', '--partition=%P']);
    // SAMPLE entries are documentation, not values.
    expect(opts.list('sbatch-env')).toEqual(['SLURM_CONF=/etc/slurm/slurm.conf']);
    expect(opts.integer('priority-spread', undefined, 0)).toBe(10);
    expect(opts.configValue('listen')?.value).toEqual([{ host: '127.0.0.1', port: 9006, url: 'http://dispatch.zzzzz.example.com:9006' }]);
  });

  it('gives each command only its own sections: Containers.LSF is not read by slurm, a unitless 0 duration is 0s', () => {
    const path = configFile();
    expect(parseCommandLine(['--config', path], TABLE, 'slurm').string('max-run-time-default')).toBeUndefined();
    expect(parseCommandLine(['--config', path], TABLE, 'lsf').duration('max-run-time-default', 5)).toBe(0);
    // DispatchLSF has only its SAMPLE entry: no listener for lsf.
    expect(parseCommandLine(['--config', path], TABLE, 'lsf').configValue('listen')).toBeUndefined();
  });

  it('flags win over the config file', () => {
    const path = configFile();
    const opts = parseCommandLine(['--config', path, '--poll-interval', '2s', '--crunch-run-arg=--x', '--sbatch-arg=--qos=a'], TABLE, 'slurm');
    expect(opts.duration('poll-interval', 1)).toBe(2000);
    expect(opts.list('crunch-run-arg')).toEqual(['--x']);
    expect(opts.list('sbatch-arg')).toEqual(['--qos=a']);
    expect(opts.string('runtime-engine')).toBe('singularity');
  });

  it('matches key names case-insensitively, as the Go loader does', () => {
    const path = configFile((c) => {
      c.Containers.Slurm = c.Containers.SLURM;
      delete c.Containers.SLURM;
      c.Containers.minretryperiod = '1m';
      delete c.Containers.MinRetryPeriod;
    });
    const opts = parseCommandLine(['--config', path], TABLE, 'slurm');
    expect(opts.integer('priority-spread', undefined, 0)).toBe(10);
    expect(opts.duration('min-retry-period', 0)).toBe(60_000);
  });

  it('works with a minimal config: keys that are missing keep the defaults', () => {
    const path = join(dir, 'minimal.yml');
    writeFileSync(path, 'Clusters:\n  abcde:\n    SystemRootToken: xyz\n');
    const opts = parseCommandLine(['--config', path], TABLE, 'local');
    expect(opts.duration('poll-interval', 10_000)).toBe(10_000);
    expect(opts.list('crunch-run-arg')).toEqual([]);
    expect(opts.configValue('listen')).toBeUndefined();
  });

  it.each([
    ['a string where a number is read', (c: any) => (c.Containers.SLURM.PrioritySpread = 'ten'), /Clusters\.zzzzz\.Containers\.SLURM\.PrioritySpread: expected number, got string "ten"$/],
    ['a duration without a unit', (c: any) => (c.Containers.MinRetryPeriod = 30), /Clusters\.zzzzz\.Containers\.MinRetryPeriod: expected a duration with a unit, e\.g\. "30s", got number 30$/],
    ['a bad duration', (c: any) => (c.Containers.CloudVMs.PollInterval = '10 parsecs'), /Containers\.CloudVMs\.PollInterval: invalid duration "10 parsecs"/],
    ['a bad size', (c: any) => (c.Containers.ReserveExtraRAM = 'lots'), /Containers\.ReserveExtraRAM: invalid size "lots"/],
    ['a list that is a string', (c: any) => (c.Containers.CrunchRunArgumentsList = '--x'), /Containers\.CrunchRunArgumentsList: expected array, got string "--x"$/],
    ['a list item that is a number', (c: any) => (c.Containers.SLURM.SbatchArgumentsList = ['--mem=%M', 5]), /Containers\.SLURM\.SbatchArgumentsList\.1: expected string, got number 5$/],
    ['a misspelt key in a section read whole', (c: any) => (c.Containers.SLURM.SbatchArgumentList = ['--x']), /Containers\.SLURM\.SbatchArgumentList: unknown key/],
    ['a bad environment variable name', (c: any) => (c.Containers.SLURM.SbatchEnvironmentVariables = { 'A-B': 'x' }), /SbatchEnvironmentVariables\.A-B: not a valid environment variable name, got string "A-B"$/],
    ['a boolean that is a string', (c: any) => (c.TLS.Insecure = 'yes'), /Clusters\.zzzzz\.TLS\.Insecure: expected boolean, got string "yes"$/],
    ['an ExternalURL that is not a URL', (c: any) => (c.Services.Controller.ExternalURL = 'zzzzz example'), /Services\.Controller\.ExternalURL: "zzzzz example" is not a URL/],
    ['an InternalURL that is not http(s)', (c: any) => (c.Services.DispatchSLURM.InternalURLs = { 'ftp://d.example:9006': {} }), /InternalURLs\.ftp:\/\/d\.example:9006: .*not an http:\/\/ or https:\/\/ URL/],
    ['a section that is not a mapping', (c: any) => (c.Containers = ['x']), /Clusters\.zzzzz\.Containers: expected a mapping/],
    ['a negative integer', (c: any) => (c.API.MaxItemsPerResponse = -1), /Clusters\.zzzzz\.API\.MaxItemsPerResponse: expected a number >= 0, got number -1$/],
    ['a fractional size', (c: any) => (c.Containers.ReserveExtraRAM = 1.5), /Containers\.ReserveExtraRAM: expected a whole number of bytes, got number 1\.5$/],
    ['InternalURLs that are a list', (c: any) => (c.Services.DispatchSLURM.InternalURLs = ['http://d:9006']), /Services\.DispatchSLURM\.InternalURLs: expected a mapping, got array$/],
  ])('exits 2 naming the key for %s', (_what, edit, message) => {
    const path = configFile(edit);
    const msg = usageMessage(() => parseCommandLine(['--config', path], TABLE, 'slurm'));
    expect(msg).toMatch(message);
    expect(msg.startsWith(`${path}: `)).toBe(true);
  });

  it('never shows the value of a credential key, even when it is ill-typed', () => {
    for (const key of ['SystemRootToken', 'ManagementToken']) {
      const path = configFile((c) => (c[key] = 987654321987654));
      const msg = usageMessage(() => parseCommandLine(['--config', path], TABLE, 'slurm'));
      expect(msg).toBe(`${path}: Clusters.zzzzz.${key}: expected string, got number`);
    }
  });

  it('needs exactly one cluster', () => {
    const two = configFile((_c, doc) => (doc.Clusters.yyyyy = { SystemRootToken: 'x' }));
    expect(usageMessage(() => loadClusterConfig(two))).toMatch(/exactly one cluster, found 2 \(zzzzz, yyyyy\)/);
    const none = join(dir, 'none.yml');
    writeFileSync(none, 'Clusters: {}\n');
    expect(usageMessage(() => loadClusterConfig(none))).toMatch(/exactly one cluster, found 0/);
  });

  it('says so for a missing file and for bad YAML', () => {
    expect(usageMessage(() => loadClusterConfig(join(dir, 'nope.yml')))).toMatch(/cannot read cluster config .*nope\.yml: no such file/);
    const bad = join(dir, 'bad.yml');
    writeFileSync(bad, 'Clusters:\n  zzzzz:\n    A: 1\n    A: 2\n');
    expect(usageMessage(() => loadClusterConfig(bad))).toMatch(/not valid YAML/);
  });

  it('takes the path from --config, else $ARVADOS_CONFIG', () => {
    expect(configPath('/a.yml', { ARVADOS_CONFIG: '/b.yml' })).toBe('/a.yml');
    expect(configPath(undefined, { ARVADOS_CONFIG: '/b.yml' })).toBe('/b.yml');
    const path = configFile();
    const opts = parseCommandLine([], TABLE, 'slurm', { ARVADOS_CONFIG: path });
    expect(opts.config?.path).toBe(path);
  });

  it('--help needs no readable config', () => {
    const opts = parseCommandLine(['--help', '--config', join(dir, 'missing.yml')], TABLE, 'local');
    expect(opts.flag('help')).toBe(true);
  });

  it('reports a bad value from the config against the config key, not the flag', () => {
    const path = configFile((c) => (c.Containers.CloudVMs.PollInterval = '0s'));
    const opts = parseCommandLine(['--config', path], TABLE, 'local');
    expect(usageMessage(() => opts.duration('poll-interval', 10_000, 1))).toBe(`${path}: Clusters.zzzzz.Containers.CloudVMs.PollInterval: must be at least 1 ms, got "0s"`);
  });

  it('refuses a NUL in CrunchRunArgumentsList, --crunch-run-arg and the crunch-run command (issue 18 item 10)', () => {
    const path = configFile((c) => (c.Containers.CrunchRunArgumentsList = ['--x', 'a\0b']));
    expect(usageMessage(() => parseCommandLine(['--config', path], TABLE, 'local').list('crunch-run-arg'))).toBe(
      `${path}: Clusters.zzzzz.Containers.CrunchRunArgumentsList: must not contain a NUL character`,
    );
    const cmd = configFile((c) => (c.Containers.CrunchRunCommand = 'crunch-run\0x'));
    expect(usageMessage(() => parseCommandLine(['--config', cmd], TABLE, 'local').string('crunch-run-command'))).toMatch(/CrunchRunCommand: must not contain a NUL/);
  });

  it('refuses a duration key of 2^31 ms or more (issue 18 item 9)', () => {
    const path = configFile((c) => (c.Containers.CloudVMs.PollInterval = '600h'));
    expect(usageMessage(() => parseCommandLine(['--config', path], TABLE, 'local').duration('poll-interval', 10_000, 1))).toMatch(/PollInterval.*too large \(at most 596h31m23\.647s\)/);
  });

  it('maps every key to a distinct flag per command (the README table is this list)', () => {
    for (const cmd of ['local', 'slurm', 'lsf']) {
      const flags = CONFIG_KEYS.filter((k) => !k.commands || k.commands.includes(cmd)).map((k) => k.flag);
      expect(new Set(flags).size).toBe(flags.length);
    }
  });
});

describe('API credentials: the config, else the environment as a deprecated fallback', () => {
  const path = configFile();
  const opts = parseCommandLine(['--config', path], TABLE, 'local');
  const ROOT = 'systemroottoken0123456789abcdefghijklmnopqrstuvwxyz';

  it('come from the config when it names the controller and the token', () => {
    const r = resolveCredentials(opts, { HOME: dir, PATH: '/bin' });
    expect(r.source).toBe('config');
    expect(r.env).toMatchObject({ ARVADOS_API_HOST: 'zzzzz.example.com', ARVADOS_API_TOKEN: ROOT, ARVADOS_API_HOST_INSECURE: '0', PATH: '/bin' });
    // settings.conf must not fill anything in.
    expect(r.env.HOME).toBeUndefined();
    expect(r.systemRootToken).toBe(ROOT);
    expect(r.warnings).toEqual([]);
  });

  it('the config wins over ARVADOS_API_*, which are ignored with one warning', () => {
    const r = resolveCredentials(opts, { ARVADOS_API_HOST: 'other:443', ARVADOS_API_TOKEN: 'envtoken', ARVADOS_API_HOST_INSECURE: '1' });
    expect(r.env).toMatchObject({ ARVADOS_API_HOST: 'zzzzz.example.com', ARVADOS_API_TOKEN: ROOT, ARVADOS_API_HOST_INSECURE: '0' });
    expect(r.warnings).toEqual([expect.stringMatching(/^ignoring ARVADOS_API_HOST, ARVADOS_API_TOKEN, ARVADOS_API_HOST_INSECURE: the cluster config .* gives the API host and token$/)]);
    expect(r.warnings.join()).not.toContain('envtoken');
  });

  it('TLS.Insecure comes from the config (default false)', () => {
    const p = configFile((c) => (c.TLS.Insecure = true));
    expect(resolveCredentials(parseCommandLine(['--config', p], TABLE, 'local'), {}).env.ARVADOS_API_HOST_INSECURE).toBe('1');
    const q = configFile((c) => delete c.TLS);
    expect(resolveCredentials(parseCommandLine(['--config', q], TABLE, 'local'), { ARVADOS_API_HOST_INSECURE: '1' }).env.ARVADOS_API_HOST_INSECURE).toBe('0');
  });

  it('a config naming neither: the environment, with one deprecation warning and one about the SystemRootToken', () => {
    const p = configFile((c) => {
      c.SystemRootToken = '';
      c.Services.Controller.ExternalURL = '';
    });
    const r = resolveCredentials(parseCommandLine(['--config', p], TABLE, 'local'), { ARVADOS_API_HOST: 'other:443', ARVADOS_API_TOKEN: 'envtoken' });
    expect(r.source).toBe('environment');
    expect(r.env).toMatchObject({ ARVADOS_API_HOST: 'other:443', ARVADOS_API_TOKEN: 'envtoken' });
    expect(r.systemRootToken).toBeUndefined();
    expect(r.warnings).toEqual([expect.stringMatching(/names neither Services\.Controller\.ExternalURL nor SystemRootToken: using ARVADOS_API_\* \/ settings\.conf \(deprecated/), expect.stringMatching(/^no SystemRootToken is known/)]);
  });

  it('no config file: the environment, with only the SystemRootToken warning', () => {
    const r = resolveCredentials(parseCommandLine([], TABLE, 'local', { HOME: '/nonexistent' }), { ARVADOS_API_HOST: 'h:1', ARVADOS_API_TOKEN: 't' });
    expect(r.source).toBe('environment');
    expect(r.warnings).toEqual([expect.stringMatching(/^no SystemRootToken is known/)]);
  });

  it('a config naming only one of them is a configuration error naming the other', () => {
    const p = configFile((c) => (c.Services.Controller.ExternalURL = ''));
    expect(usageMessage(() => resolveCredentials(parseCommandLine(['--config', p], TABLE, 'local'), { ARVADOS_API_HOST: 'x:1' }))).toBe(
      `${p}: Clusters.zzzzz.Services.Controller.ExternalURL is not set (the config sets SystemRootToken; set both)`,
    );
    const q = configFile((c) => (c.SystemRootToken = ''));
    expect(usageMessage(() => resolveCredentials(parseCommandLine(['--config', q], TABLE, 'local'), {}))).toMatch(/SystemRootToken is not set \(the config sets Services\.Controller\.ExternalURL; set both\)$/);
  });

  it('an http ExternalURL stays an explicit http:// host', () => {
    const p = configFile((c) => (c.Services.Controller.ExternalURL = 'http://127.0.0.1:8000/'));
    expect(resolveCredentials(parseCommandLine(['--config', p], TABLE, 'local'), {}).env.ARVADOS_API_HOST).toBe('http://127.0.0.1:8000');
  });
});

describe("the Go dispatchers' flag spellings", () => {
  it('rewrites -poll-interval (whole seconds in Go), -crunch-run-command and -config', () => {
    expect(goSpellings(['-poll-interval=1', '-crunch-run-command=/x/crunch-run', '-config', '/etc/a.yml'], TABLE).args).toEqual([
      '--poll-interval=1s',
      '--crunch-run-command=/x/crunch-run',
      '--config=/etc/a.yml',
    ]);
    expect(goSpellings(['-poll-interval', '30'], TABLE).args).toEqual(['--poll-interval=30s']);
  });

  it('ignores -pprof and -skip-legacy with a note', () => {
    const r = goSpellings(['-pprof', ':6060', '-skip-legacy', '--json'], { ...TABLE, json: { type: 'boolean', help: '' } });
    expect(r.args).toEqual(['--json']);
    expect(r.notes).toEqual([expect.stringMatching(/-pprof/), expect.stringMatching(/-skip-legacy/)]);
  });

  it('leaves the values of our own flags and unknown spellings alone', () => {
    expect(goSpellings(['--crunch-run-arg', '-config', '-bogus=1'], TABLE).args).toEqual(['--crunch-run-arg', '-config', '-bogus=1']);
    expect(goSpellings(['--crunch-run-arg=-poll-interval=1'], TABLE).args).toEqual(['--crunch-run-arg=-poll-interval=1']);
  });

  it('parses to the same settings as ours', () => {
    const path = configFile();
    const go = parseCommandLine(['-poll-interval=1', `-config=${path}`], TABLE, 'local');
    expect(go.duration('poll-interval', 10_000)).toBe(1000);
    expect(go.config?.path).toBe(path);
  });
});

describe('--submit-rate', () => {
  it.each([
    ['20/1s', { count: 20, periodMs: 1000 }],
    ['600/1m', { count: 600, periodMs: 60_000 }],
    ['5/500ms', { count: 5, periodMs: 500 }],
  ])('%s', (text, rate) => expect(parseSubmitRate(text)).toEqual(rate));

  it.each(['0/1s', '-1/1s', 'x/1s', '20/0s', '20/1', '20/fortnight', '20', ''])('refuses %j', (text) => expect(() => parseSubmitRate(text)).toThrow(RangeError));

  it('a bad value is a usage error naming the flag', () => {
    const opts = parseCommandLine(['--submit-rate', '20/0s'], { 'submit-rate': { type: 'string', help: '' } }, 'slurm');
    expect(usageMessage(() => opts.rate('submit-rate'))).toMatch(/^--submit-rate: "20\/0s": the count must be >= 1 and the period > 0; see 'arvados-dispatch slurm --help'$/);
  });
});

describe('dispatcher settings from the command line', () => {
  it('listens to the event stream unless --no-events', () => {
    const env = { HOME: '/nonexistent' };
    expect(dispatcherSettings(parseCommandLine([], TABLE, 'local', env)).events).toBe(true);
    expect(dispatcherSettings(parseCommandLine(['--no-events'], TABLE, 'local', env)).events).toBe(false);
  });
});
