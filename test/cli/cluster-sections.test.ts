// The structured config sections (InstanceTypes, PostgreSQL.Connection,
// SupervisorFraction, BsubSudoUser) and the flags that stand for them.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { parseCommandLine } from '../../src/cli/args.js';
import { batchOptions, systemOptionReader } from '../../src/cli/batch-command.js';
import { readClusterSections } from '../../src/cli/cluster-sections.js';
import { lsf as LSF, bsubSudoUser as sudoUserOf } from '../../src/runners/batch/lsf/index.js';
import type { Options } from '../../src/cli/args.js';

const bsubSudoUser = (opts: Options): string | undefined => sudoUserOf(systemOptionReader(opts));
import { supervisorFractionOf } from '../../src/cli/dispatching.js';

const dir = mkdtempSync(join(tmpdir(), 'arvados-dispatch-sections-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function config(text: string): string {
  const path = join(dir, `config-${n++}.yml`);
  writeFileSync(path, text);
  return path;
}

describe('readClusterSections', () => {
  it('reads InstanceTypes with sizes, GPUs and Scratch from IncludedScratch + AddedScratch, keeping the names', () => {
    const path = config(`Clusters:
  zzzzz:
    Containers:
      LocalKeepBlobBuffersPerVCPU: 0
      MaximumPriceFactor: 1.2
      CloudVMs:
        SupervisorFraction: 0.3
    PostgreSQL:
      Connection:
        host: 127.0.0.1
        port: "5432"
        user: arvados
        password: xyzzy
        dbname: arvados_production
        sslmode: disable
    InstanceTypes:
      Small2:
        ProviderType: m5.large
        VCPUs: 2
        RAM: 8GiB
        IncludedScratch: 16GB
        AddedScratch: 4GB
        Price: 0.096
      gpu1:
        VCPUs: 8
        RAM: 32GiB
        Scratch: 100GB
        Price: 1.1
        Preemptible: true
        GPU:
          Stack: cuda
          DeviceCount: 1
          HardwareTarget: "8.6"
          DriverVersion: "12.0"
          VRAM: 16GiB
`);
    const s = readClusterSections(path);
    expect(s.instanceTypes).toEqual([
      { name: 'Small2', vcpus: 2, ram: 8 * 2 ** 30, scratch: 20e9, price: 0.096, preemptible: false },
      { name: 'gpu1', vcpus: 8, ram: 32 * 2 ** 30, scratch: 100e9, price: 1.1, preemptible: true, gpu: { stack: 'cuda', deviceCount: 1, hardwareTarget: '8.6', driverVersion: '12.0', vram: 16 * 2 ** 30 } },
    ]);
    expect(s.instanceTypeRules).toEqual({ localKeepBlobBuffersPerVCPU: 0, maximumPriceFactor: 1.2 });
    expect(s.supervisorFraction).toBe(0.3);
    expect(s.postgres).toEqual({ host: '127.0.0.1', port: 5432, user: 'arvados', password: 'xyzzy', dbname: 'arvados_production', sslmode: 'disable' });
  });

  it("reads config.default.yml's empty Connection as no database", () => {
    const s = readClusterSections(config('Clusters:\n  zzzzz:\n    PostgreSQL:\n      Connection:\n        host: ""\n        port: ""\n        user: ""\n        password: ""\n        dbname: ""\n        SAMPLE: ""\n'));
    expect(s.postgres).toBeUndefined();
  });

  it('has nothing configured for an empty cluster', () => {
    const s = readClusterSections(config('Clusters:\n  zzzzz:\n    PostgreSQL:\n      Connection: {}\n'));
    expect(s).toEqual({ instanceTypes: [], instanceTypeRules: {} });
  });

  it.each([
    ['InstanceTypes:\n      a:\n        RAM: lots\n', /InstanceTypes\.a\.ram: invalid size "lots"/],
    ['InstanceTypes:\n      a:\n        VCPUs: -1\n', /InstanceTypes\.a\.vcpus/],
    ['Containers:\n      CloudVMs:\n        SupervisorFraction: 2\n', /SupervisorFraction/],
    ['PostgreSQL:\n      Connection:\n        host: h\n        sslmode: sometimes\n', /PostgreSQL\.Connection\.sslmode/],
  ])('names the key of a bad value: %j', (yaml, want) => {
    expect(() => readClusterSections(config(`Clusters:\n  zzzzz:\n    ${yaml}`))).toThrow(want);
  });
});

describe('--bsub-sudo-user', () => {
  const parse = (argv: string[]): ReturnType<typeof parseCommandLine> => parseCommandLine(argv, batchOptions(LSF), 'lsf', {});
  it('defaults to crunch, as in Arvados', () => {
    expect(bsubSudoUser(parse(['--config', config('Clusters:\n  zzzzz: {}\n')]))).toBe('crunch');
  });
  it("'' turns sudo off, on the command line or in the config", () => {
    expect(bsubSudoUser(parse(['--config', config('Clusters:\n  zzzzz: {}\n'), '--bsub-sudo-user', '']))).toBeUndefined();
    expect(bsubSudoUser(parse(['--config', config('Clusters:\n  zzzzz:\n    Containers:\n      LSF:\n        BsubSudoUser: ""\n')]))).toBeUndefined();
  });
  it('takes the flag over the config', () => {
    const path = config('Clusters:\n  zzzzz:\n    Containers:\n      LSF:\n        BsubSudoUser: lsfuser\n');
    expect(bsubSudoUser(parse(['--config', path]))).toBe('lsfuser');
    expect(bsubSudoUser(parse(['--config', path, '--bsub-sudo-user', 'other']))).toBe('other');
  });
});

describe('--supervisor-fraction', () => {
  const parse = (argv: string[]): ReturnType<typeof parseCommandLine> => parseCommandLine(argv, batchOptions(LSF), 'lsf', {});
  it('takes the flag over Containers.CloudVMs.SupervisorFraction', () => {
    const path = config('Clusters:\n  zzzzz:\n    Containers:\n      CloudVMs:\n        SupervisorFraction: 0.3\n');
    expect(supervisorFractionOf(parse(['--config', path]))).toBe(0.3);
    expect(supervisorFractionOf(parse(['--config', path, '--supervisor-fraction', '0.5']))).toBe(0.5);
  });
  it.each(['1.5', '-1', 'half'])('refuses %j', (v) => {
    expect(() => supervisorFractionOf(parse(['--config', config('Clusters:\n  zzzzz: {}\n'), '--supervisor-fraction', v]))).toThrow(/--supervisor-fraction/);
  });
});
