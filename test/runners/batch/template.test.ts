import { describe, expect, it } from '@jest/globals';
import type { Container } from '../../../src/types.js';
import type { TemplateRules } from '../../../src/runners/batch/adapter.js';
import { DEFAULT_SBATCH_ARGUMENTS, DEFAULT_SBATCH_GPU_ARGUMENTS, SLURM_TEMPLATE_RULES, SlurmAdapter } from '../../../src/runners/batch/slurm/adapter.js';
import {
  TemplateError,
  containerArguments,
  estimateDockerImageSize,
  estimateScratchSpace,
  expandTemplates as expand,
  gpuCount,
  templateValues,
  validateTemplates,
  type TemplateValues,
} from '../../../src/runners/batch/template.js';

function expandTemplates(templates: readonly string[], values: TemplateValues): string[] {
  return expand(templates, values, SLURM_TEMPLATE_RULES, 'sbatch arguments');
}

/** sbatch's arguments for a container, as the Slurm adapter builds them (no output directory). */
function sbatchArgs(
  c: Container,
  o: { args?: readonly string[]; gpuArgs?: readonly string[]; reserveExtraRam?: number; instanceType?: string } = {},
): string[] {
  const args = containerArguments(
    c,
    { args: o.args ?? DEFAULT_SBATCH_ARGUMENTS, gpuArgs: o.gpuArgs ?? DEFAULT_SBATCH_GPU_ARGUMENTS, reserveExtraRam: o.reserveExtraRam, instanceType: o.instanceType },
    SLURM_TEMPLATE_RULES,
    'sbatch arguments',
  );
  return [...new SlurmAdapter({ jobOutputDir: null }).submit({ uuid: c.uuid, script: '', args, container: c }).args];
}

const MiB = 1024 * 1024;

function ctr(fields: Partial<Container>): Container {
  return { uuid: '123', state: 'Locked', priority: 1, locked_by_uuid: null, ...fields };
}

// Arvados' services/api/test/fixtures/containers.yml "queued".
const queued = ctr({
  uuid: 'zzzzz-dz642-queuedcontainer',
  container_image: 'test',
  runtime_constraints: { ram: 12000000000, vcpus: 4, gpu: { device_count: 0 } },
  mounts: {
    '/tmp': { kind: 'tmp', capacity: 24000000000 },
    '/var/spool/cwl': { kind: 'tmp', capacity: 24000000000 },
  },
});

describe('sbatchArgs (StubbedSuite)', () => {
  it('TestSbatchArgs: the configured list follows --nice and --no-requeue; the job name is always the UUID', () => {
    const c = ctr({ runtime_constraints: { ram: 250000000, vcpus: 2 } });
    // Go's test also passes nil, which there means "no arguments"; here an
    // omitted list means Arvados' default list (see the next test).
    for (const args of [[], ['--arg1=v1', '--arg2']]) {
      expect(sbatchArgs(c, { args })).toEqual(['--nice=10000', '--no-requeue', ...args, '--job-name=123']);
    }
  });

  it('uses the Arvados default list and a 550 MiB reserve when not told otherwise', () => {
    const c = ctr({ runtime_constraints: { ram: 250000000, vcpus: 2 } });
    expect(sbatchArgs(c)).toEqual([
      '--nice=10000',
      '--no-requeue',
      '--job-name=123',
      '--mem=789',
      '--cpus-per-task=2',
      '--tmp=0',
    ]);
  });

  it('TestSbatchArgs_GPU: adds the GPU list when GPUs are requested', () => {
    const c = ctr({ runtime_constraints: { ram: 250000000, vcpus: 2, gpu: { device_count: 3 } } });
    expect(
      sbatchArgs(c, {
        args: ['--account=accountname', ...DEFAULT_SBATCH_ARGUMENTS],
        gpuArgs: ['--gpus=%G', '--partition=gpupartition'],
        reserveExtraRam: 550 * MiB,
      }),
    ).toEqual([
      '--nice=10000',
      '--no-requeue',
      '--account=accountname',
      '--job-name=123',
      '--mem=789',
      '--cpus-per-task=2',
      '--tmp=0',
      '--gpus=3',
      '--partition=gpupartition',
    ]);
  });

  it('uses the default GPU list, and the legacy cuda constraint', () => {
    const c = ctr({ runtime_constraints: { ram: 0, vcpus: 1, cuda: { device_count: 2 } } });
    expect(sbatchArgs(c, { args: [] })).toEqual(['--nice=10000', '--no-requeue', '--gpus=2', '--job-name=123']);
    expect(sbatchArgs(ctr({ runtime_constraints: { vcpus: 1 } }), { args: [] })).toEqual([
      '--nice=10000',
      '--no-requeue',
      '--job-name=123',
    ]);
  });

  it('TestSbatchPartition: joins partitions with commas', () => {
    const c = ctr({
      runtime_constraints: { ram: 250000000, vcpus: 1 },
      scheduling_parameters: { partitions: ['blurb', 'b2'] },
    });
    expect(sbatchArgs(c, { reserveExtraRam: 550 * MiB })).toEqual([
      '--nice=10000',
      '--no-requeue',
      '--job-name=123',
      '--mem=789',
      '--cpus-per-task=1',
      '--tmp=0',
      '--partition=blurb,b2',
    ]);
  });

  it('TestSbatchArgumentsError: rejects an unknown placeholder, at expansion and at startup validation', () => {
    expect(() => sbatchArgs(ctr({}), { args: ['--bad% template'] })).toThrow(/^unknown substitution % {2}in sbatch arguments/);
    expect(() => sbatchArgs(ctr({}), { args: ['--x=%Z'] })).toThrow(TemplateError);
    expect(() => sbatchArgs(ctr({}), { args: ['--x=%Z'] })).toThrow('unknown substitution %Z in sbatch arguments');
    expect(() => validateTemplates(['--x=%Z'], SLURM_TEMPLATE_RULES, 'sbatch arguments')).toThrow('unknown substitution %Z in sbatch arguments');
    expect(() => validateTemplates([...DEFAULT_SBATCH_ARGUMENTS, '--time=%W', '100%%'], SLURM_TEMPLATE_RULES)).not.toThrow();
  });

  it('TestMissingFromSqueue: the arguments for the queued fixture', () => {
    expect(sbatchArgs(queued, { reserveExtraRam: 550 * MiB })).toEqual([
      '--nice=10000',
      '--no-requeue',
      '--job-name=zzzzz-dz642-queuedcontainer',
      '--mem=11995',
      '--cpus-per-task=4',
      '--tmp=45777',
    ]);
  });

  it('TestSbatchInstanceTypeConstraint: %I is the given instance type, or empty', () => {
    const c = ctr({ runtime_constraints: { ram: 250000000, vcpus: 2 } });
    const args = ['--constraint=instancetype=%I'];
    expect(sbatchArgs(c, { args, instanceType: 'a1.medium' }).slice(2, -1)).toEqual([
      '--constraint=instancetype=a1.medium',
    ]);
    expect(sbatchArgs(c, { args }).slice(2, -1)).toEqual(['--constraint=instancetype=']);
  });
});

describe('expandTemplates', () => {
  const values = templateValues(
    ctr({
      uuid: 'zzzzz-dz642-000000000000000',
      runtime_constraints: { ram: MiB, keep_cache_ram: MiB, vcpus: 3, gpu: { device_count: 1 } },
      scheduling_parameters: { max_run_time: 61, partitions: ['a'] },
    }),
    { reserveExtraRam: 1, instanceType: 'big' },
  );

  it('substitutes every placeholder', () => {
    expect(expandTemplates(['%U %C %G %I %M %P %T %W %%'], values)).toEqual([
      'zzzzz-dz642-000000000000000 3 1 big 3 a 0 2 %',
    ]);
  });

  it('treats %% as a literal percent sign, leaving what follows alone', () => {
    expect(expandTemplates(['100%%', '%%P', '%%%C'], values)).toEqual(['100%', '%P', '%3']);
  });

  it('passes a trailing lone % through, as Go does', () => {
    expect(expandTemplates(['50%'], values)).toEqual(['50%']);
  });

  it('drops an argument whose %W is 0 or whose %P is empty', () => {
    const none = templateValues(ctr({ runtime_constraints: {} }));
    expect(expandTemplates(['--time=%W', '--partition=%P', '--keep'], none)).toEqual(['--keep']);
    expect(expandTemplates(['--time=%W', '--partition=%P'], values)).toEqual(['--time=2', '--partition=a']);
  });

  it('in pair mode, drops the option before an empty value too (LSF-style "-W %W")', () => {
    const rules: TemplateRules = { placeholders: ['%W', '%C'], dropWhenEmpty: ['%W'], dropMode: 'pair' };
    const none = templateValues(ctr({ runtime_constraints: { vcpus: 2 } }));
    expect(expand(['-n', '%C', '-W', '%W', '-x'], none, rules)).toEqual(['-n', '2', '-x']);
    expect(expand(['-n', '%C', '-W', '%W'], values, rules)).toEqual(['-n', '3', '-W', '2']);
  });

  it('rounds max_run_time up to whole minutes (empty for no limit)', () => {
    const v = (s: number) => templateValues(ctr({ scheduling_parameters: { max_run_time: s } }))['%W'];
    expect([v(0), v(1), v(60), v(61), v(124)]).toEqual(['', '1', '1', '2', '3']);
  });
});

describe('scratch and GPU estimates', () => {
  it('sums tmp mounts only', () => {
    expect(estimateScratchSpace(queued)).toBe(48000000000);
    expect(
      estimateScratchSpace(
        ctr({
          mounts: {
            '/tmp': { kind: 'tmp', capacity: 1000 },
            '/keep': { kind: 'collection', portable_data_hash: 'x' },
            '/out': { kind: 'tmp' },
            '/bogus': null,
          },
        }),
      ),
    ).toBe(1000);
  });

  it('adds keep_cache_disk', () => {
    const c = ctr({ runtime_constraints: { keep_cache_disk: 8 * 1024 * MiB }, mounts: {} });
    expect(estimateScratchSpace(c)).toBe(8 * 1024 * MiB);
    // lib/lsf's TestSubmit expects tmp=8448MB for crPending: a 1000-byte tmp
    // mount, keep_cache_disk 8 GiB and arvadostest.DockerImage112PDH (2 blocks).
    const pending = ctr({
      container_image: 'd740a57097711e08eb9b2a93518f20ab+174',
      runtime_constraints: { keep_cache_disk: 8 * 1024 * MiB },
      mounts: { '/mnt/out': { kind: 'tmp', capacity: 1000 } },
    });
    expect(templateValues(pending)['%T']).toBe('8448');
  });

  it('estimates a Docker image from the size in its portable data hash', () => {
    expect(estimateDockerImageSize('test')).toBe(0);
    expect(estimateDockerImageSize(undefined)).toBe(0);
    expect(estimateDockerImageSize('d41d8cd98f00b204e9800998ecf8427e+0')).toBe(0);
    expect(estimateDockerImageSize('d41d8cd98f00b204e9800998ecf8427e+121')).toBe(0);
    expect(estimateDockerImageSize('d41d8cd98f00b204e9800998ecf8427e+122')).toBe(64 * MiB);
    expect(estimateDockerImageSize('d41d8cd98f00b204e9800998ecf8427e+3440')).toBe(80 * 64 * MiB);
  });

  it('counts the image twice, and the tmp mounts cover the load buffer', () => {
    const image = 'd41d8cd98f00b204e9800998ecf8427e+122'; // 64 MiB
    const small = ctr({ container_image: image, mounts: { '/tmp': { kind: 'tmp', capacity: MiB } } });
    expect(estimateScratchSpace(small)).toBe(128 * MiB);
    const big = ctr({ container_image: image, mounts: { '/tmp': { kind: 'tmp', capacity: 100 * MiB } } });
    expect(estimateScratchSpace(big)).toBe(164 * MiB);
  });

  it('reads the GPU count from gpu, else cuda', () => {
    expect(gpuCount(ctr({}))).toBe(0);
    expect(gpuCount(ctr({ runtime_constraints: { gpu: { device_count: 2 } } }))).toBe(2);
    expect(gpuCount(ctr({ runtime_constraints: { cuda: { device_count: 1 } } }))).toBe(1);
  });
});
