/**
 * Instance type selection: the rules of Arvados' ChooseInstanceType, as
 * table tests (the shapes of its test cases, rewritten).
 */
import { describe, expect, it } from '@jest/globals';
import { chooseInstanceTypes, describeInstanceType, instanceNeed, type InstanceType, type InstanceTypeRules } from '../../src/runners/instance-types.js';
import type { Container } from '../../src/types.js';

const GiB = 2 ** 30;
type Ctr = Pick<Container, 'runtime_constraints' | 'scheduling_parameters' | 'mounts' | 'container_image'>;

function t(name: string, price: number, ram: number, vcpus: number, scratch = 0, extra: Partial<InstanceType> = {}): InstanceType {
  return { name, price, ram, vcpus, scratch, preemptible: false, ...extra };
}

function names(types: readonly InstanceType[], c: Ctr, rules: InstanceTypeRules = {}): string[] | string {
  const r = chooseInstanceTypes(types, c, rules);
  return r.kind === 'chosen' ? r.types.map((x) => x.name) : r.kind;
}

/** A 2-vCPU container with about 1.1 GB of RAM and 2 GiB of tmp. */
const typical: Ctr = {
  mounts: { '/tmp': { kind: 'tmp', capacity: 2 * GiB } },
  runtime_constraints: { vcpus: 2, ram: 987654321, keep_cache_ram: 123456789 },
};
const rules: InstanceTypeRules = { localKeepBlobBuffersPerVCPU: 1, reserveExtraRam: 268435456 };

describe('chooseInstanceTypes', () => {
  it('has nothing to choose, and refuses nothing, without configured types', () => {
    expect(chooseInstanceTypes([], typical)).toEqual({ kind: 'none-configured' });
  });

  it.each([
    ['too much RAM', { runtime_constraints: { ram: 9876543210, vcpus: 2 } }],
    ['too many VCPUs', { runtime_constraints: { ram: 1234567890, vcpus: 20 } }],
    ['keep_cache_ram counts as RAM', { runtime_constraints: { ram: 1234567890, vcpus: 2, keep_cache_ram: 9876543210 } }],
    ['too much scratch', { mounts: { '/tmp': { kind: 'tmp', capacity: 2 * GiB } }, runtime_constraints: { ram: 12345, vcpus: 1 } }],
  ] as Array<[string, Ctr]>)('is unsatisfiable: %s', (_, c) => {
    const menu = [t('small1', 1.1, 1e9, 2), t('small4', 4.4, 4e9, 8, GiB), t('small2', 2.2, 2e9, 4)];
    const r = chooseInstanceTypes(menu, c, {});
    expect(r.kind).toBe('unsatisfiable');
    if (r.kind !== 'unsatisfiable') return;
    // Every type is listed, cheapest first, for the log record.
    expect(r.considered.map((x) => x.name)).toEqual(['small1', 'small2', 'small4']);
    expect(r.reason).toMatch(/^constraints not satisfiable by any configured instance type/);
  });

  it.each([
    ['cheapest fit', [t('costly', 4.4, 4e9, 8, 2 * GiB), t('best', 2.2, 2e9, 4, 2 * GiB), t('small', 1.1, 1e9, 2, 2 * GiB)]],
    ['same price: more RAM wins', [t('costly', 4.4, 4e9, 8, 2 * GiB), t('goodenough', 2.2, 2e9, 4, 2 * GiB), t('best', 2.2, 4e9, 4, 2 * GiB), t('small', 1.1, 1e9, 2, 2 * GiB)]],
    ['order of the menu does not matter', [t('small', 1.1, 1e9, 2, 2 * GiB), t('best', 2.2, 4e9, 4, 2 * GiB), t('goodenough', 2.2, 2e9, 4, 2 * GiB), t('costly', 4.4, 4e9, 8, 2 * GiB)]],
    ['scratch rules out the cheaper', [t('small', 1.1, 1e9, 2, GiB), t('nearly', 2.2, 2e9, 4, GiB), t('best', 3.3, 4e9, 4, 2 * GiB), t('costly', 4.4, 4e9, 8, 2 * GiB)]],
    ['RAM with reserves rules out the cheaper', [t('small', 1.1, 1e9, 2, GiB), t('nearly', 2.2, 1.2e9, 4, 2 * GiB), t('best', 3.3, 4e9, 4, 2 * GiB), t('costly', 4.4, 4e9, 8, 2 * GiB)]],
  ])('picks "best": %s', (_, menu) => {
    const r = chooseInstanceTypes(menu, typical, rules);
    expect(r.kind).toBe('chosen');
    if (r.kind !== 'chosen') return;
    expect(r.types[0].name).toBe('best');
  });

  it('lists the fits up to MaximumPriceFactor times the cheapest, cheapest first', () => {
    const menu = [
      t('best+7', 3.4, 8e9, 8, 64 * GiB),
      t('best+5', 3.0, 8e9, 8, 16 * GiB),
      t('best+3', 2.6, 4e9, 8, 16 * GiB),
      t('best+2', 2.4, 4e9, 8, 4 * GiB),
      t('best+1', 2.2, 2e9, 4, 4 * GiB),
      t('best', 2.0, 2e9, 4, 2 * GiB),
      t('small+1', 1.1, 1e9, 2, 16 * GiB),
      t('small', 1.0, 2e9, 2, GiB),
    ];
    expect(names(menu, typical, { maximumPriceFactor: 1.5, localKeepBlobBuffersPerVCPU: 0 })).toEqual(['best', 'best+1', 'best+2', 'best+3', 'best+5']);
  });

  it('counts the local keepstore buffers per VCPU as RAM', () => {
    const menu = [t('nearly', 2.2, 4e9, 4, 2 * GiB), t('best', 3.3, 8e9, 4, 2 * GiB), t('costly', 4.4, 12e9, 8, 2 * GiB)];
    expect(names(menu, typical, { localKeepBlobBuffersPerVCPU: 16, reserveExtraRam: 268435456, maximumPriceFactor: 1 })).toEqual(['best']);
  });

  const bare: InstanceTypeRules = { maximumPriceFactor: 1, reserveExtraRam: 0, localKeepBlobBuffersPerVCPU: 0 };
  it('matches preemptible containers to preemptible types only, and the other way round', () => {
    const menu = [
      t('costly', 4.4, 4e9, 8, 2 * GiB, { preemptible: true }),
      t('almost best', 2.2, 2e9, 4, 2 * GiB),
      t('best', 2.2, 2e9, 4, 2 * GiB, { preemptible: true }),
      t('small', 1.1, 1e9, 2, 2 * GiB, { preemptible: true }),
    ];
    expect(names(menu, { ...typical, scheduling_parameters: { preemptible: true } }, bare)).toEqual(['best']);
    expect(names(menu, typical, bare)).toEqual(['almost best']);
  });

  describe('GPUs', () => {
    const gpu = (stack: string, deviceCount: number, hardwareTarget: string, driverVersion: string, vram: number): Partial<InstanceType> => ({
      gpu: { stack, deviceCount, hardwareTarget, driverVersion, vram },
    });
    const menu = [
      t('costly', 4.4, 4 * GiB, 8, 2 * GiB, gpu('cuda', 2, '9.0', '11.0', 2 * GiB)),
      t('low_capability', 2.1, 2 * GiB, 4, 2 * GiB, gpu('cuda', 1, '8.0', '11.0', 2 * GiB)),
      t('best', 2.2, 2 * GiB, 4, 2 * GiB, gpu('cuda', 1, '9.0', '11.0', 2 * GiB)),
      t('low_driver', 2.1, 2 * GiB, 4, 2 * GiB, gpu('cuda', 1, '9.0', '10.0', 2 * GiB)),
      t('cheap_gpu', 2.0, 2 * GiB, 4, 2 * GiB, gpu('cuda', 1, '8.0', '10.0', 2 * GiB)),
      t('more_vram', 2.3, 2 * GiB, 4, 2 * GiB, gpu('cuda', 1, '8.0', '10.0', 8 * GiB)),
      t('invalid_gpu', 1.9, 2 * GiB, 4, 2 * GiB, gpu('cuda', 1, '12.0.12', '12.0.12', 2 * GiB)),
      t('gpu_rocm', 2.0, 2 * GiB, 4, 2 * GiB, gpu('rocm', 1, 'gfx1100', '6.2', 20 * GiB)),
      t('cheap_gpu_rocm', 1.9, 2 * GiB, 4, 2 * GiB, gpu('rocm', 1, 'gfx1103', '6.2', 8 * GiB)),
      t('unspecified_vram', 2.0, 2 * GiB, 4, 2 * GiB, gpu('rocm', 1, 'gfx1104', '6.2', 0)),
      t('non_gpu', 1.1, 2 * GiB, 4, 2 * GiB),
    ];
    it.each([
      [{ stack: 'cuda', device_count: 1, hardware_target: ['9.0'], driver_version: '11.0', vram: 2e9 }, 'best'],
      [{ stack: 'cuda', device_count: 2, hardware_target: ['9.0'], driver_version: '11.0', vram: 2e9 }, 'costly'],
      [{ stack: 'cuda', device_count: 1, hardware_target: ['8.0'], driver_version: '11.0', vram: 2e9 }, 'low_capability'],
      [{ stack: 'cuda', device_count: 1, hardware_target: ['9.0'], driver_version: '10.0', vram: 2e9 }, 'low_driver'],
      [{ stack: 'cuda', device_count: 1, hardware_target: ['8.0'], driver_version: '10.0', vram: 8e9 }, 'more_vram'],
      [{ stack: 'cuda', device_count: 1, hardware_target: [], driver_version: '10.0', vram: 2e9 }, 'unsatisfiable'],
      [{ stack: 'rocm', device_count: 1, hardware_target: ['gfx1104'], driver_version: '6.2', vram: 2e9 }, 'unsatisfiable'],
      [{ stack: 'cuda', device_count: 1, hardware_target: ['8.0', '9.0'], driver_version: '10.0', vram: 2e9 }, 'cheap_gpu'],
      [{ stack: 'rocm', device_count: 1, hardware_target: ['gfx1100'], driver_version: '6.2', vram: 2e9 }, 'gpu_rocm'],
      [{ stack: 'rocm', device_count: 1, hardware_target: ['gfx1100', 'gfx1103'], driver_version: '6.2', vram: 2e9 }, 'cheap_gpu_rocm'],
      [{ stack: '', device_count: 0, hardware_target: [], driver_version: '', vram: 0 }, 'non_gpu'],
    ])('%j -> %s', (g, want) => {
      const c: Ctr = { runtime_constraints: { vcpus: 2, ram: 1e9, gpu: g } };
      const r = chooseInstanceTypes(menu, c, { localKeepBlobBuffersPerVCPU: 0, reserveExtraRam: 0 });
      expect(r.kind === 'chosen' ? r.types[0].name : r.kind).toBe(want);
    });

    it('refuses an unknown GPU stack', () => {
      const r = chooseInstanceTypes(menu, { runtime_constraints: { vcpus: 1, ram: 1, gpu: { stack: 'opencl', device_count: 1 } } });
      expect(r.kind === 'unsatisfiable' && r.reason).toMatch(/invalid GPU stack "opencl"/);
    });

    it('reads the legacy cuda constraint as a CUDA request', () => {
      const c: Ctr = { runtime_constraints: { vcpus: 2, ram: 1e9, cuda: { device_count: 2, driver_version: '11.0', hardware_capability: '9.0' } } };
      const r = chooseInstanceTypes(menu, c, { localKeepBlobBuffersPerVCPU: 0, reserveExtraRam: 0 });
      expect(r.kind === 'chosen' && r.types[0].name).toBe('costly');
    });
  });

  it('adds ReserveExtraRAM, keepstore and 5% headroom to the RAM need', () => {
    const MiB = 2 ** 20;
    const need = instanceNeed({ runtime_constraints: { vcpus: 2, ram: 1000 * MiB, keep_cache_ram: 0 } }, { reserveExtraRam: 100 * MiB, localKeepBlobBuffersPerVCPU: 1 });
    const raw = 1000 * MiB + 100 * MiB + 220 * MiB + Math.floor((2 * 64 * MiB * 11) / 10);
    expect(need.ram).toBe(Math.floor((raw * 100) / 95));
  });

  it('describes a type on one line', () => {
    expect(describeInstanceType(t('m1', 0.5, 4 * GiB, 2, 10 * GiB))).toBe('m1 (2 VCPUs, 4096 MiB RAM, 10240 MiB scratch, price 0.5)');
  });
});

describe('%I in bsub and qsub arguments', () => {
  const c = { uuid: 'zzzzz-dz642-000000000000001', state: 'Locked', priority: 1, locked_by_uuid: null, runtime_constraints: { vcpus: 1, ram: 2 ** 20 } } as const;

  it('bsub: expands %I, and LsfAdapter.submit passes the arguments the core expanded with the chosen type', async () => {
    const { bsubArgs } = await import('../../src/runners/batch/lsf/template.js');
    const { LsfAdapter } = await import('../../src/runners/batch/lsf/adapter.js');
    const { containerArguments } = await import('../../src/runners/batch/template.js');
    expect(bsubArgs(c, { args: ['-R', 'select[type==%I]'] }, { instanceType: 'm.small' })).toEqual(['-R', 'select[type==m.small]']);
    const a = new LsfAdapter({ user: 'crunch' });
    const args = containerArguments(c, { args: ['-J', '%U', '-R', 'select[type==%I]'], gpuArgs: [], instanceType: 'm.large', maxRunMinutes: a.maxRunMinutes(c) }, a.templates);
    const spec = a.submit({ uuid: c.uuid, script: '', args, container: c, instanceType: 'm.large' });
    expect(spec.args).toEqual(['-J', c.uuid, '-R', 'select[type==m.large]']);
  });

  it('qsub: %I is a Grid Engine placeholder, expanded in the submitted arguments', async () => {
    const { SGE_TEMPLATE_RULES } = await import('../../src/runners/batch/sge/adapter.js');
    const { containerArguments } = await import('../../src/runners/batch/template.js');
    const args = containerArguments(c, { args: ['-l', 'arch=%I'], gpuArgs: [], instanceType: 'm.small' }, SGE_TEMPLATE_RULES);
    expect(args).toEqual(['-l', 'arch=m.small']);
  });
});
