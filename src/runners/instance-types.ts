/**
 * Instance types (`Clusters.<id>.InstanceTypes`): which configured type a
 * container fits, by the rules of Arvados' `ChooseInstanceType` — enough
 * vCPUs, RAM (the request plus keep_cache_ram, `ReserveExtraRAM`, the local
 * keepstore's buffers, then 5% headroom), scratch, GPUs of the right stack,
 * count, VRAM, driver and hardware target, and the same preemptible
 * setting; the cheapest first. Used for `%I` in batch argument templates,
 * for the management API's `instance_types`, and to cancel, before any
 * submission, a container no type can hold.
 *
 * @module
 */
import type { Container } from '../types.js';
import { DEFAULT_RESERVE_EXTRA_RAM } from './defaults.js';
import { estimateScratchSpace } from './batch/template.js';
import type { InstanceTypeView } from '../dispatcher/options.js';

/** GPUs of an {@link InstanceType}. */
export interface InstanceTypeGpu {
  /** `cuda` or `rocm`. */
  readonly stack: string;
  readonly deviceCount: number;
  /** CUDA compute capability (`8.0`) or ROCm LLVM target (`gfx1100`). */
  readonly hardwareTarget: string;
  readonly driverVersion: string;
  /** Bytes of memory per GPU. */
  readonly vram: number;
}

/** One configured instance type. */
export interface InstanceType {
  /** Its key under `InstanceTypes`: what `%I` expands to. */
  readonly name: string;
  readonly vcpus: number;
  /** Bytes. */
  readonly ram: number;
  /** Bytes of scratch disk (`Scratch`, else `IncludedScratch + AddedScratch`). */
  readonly scratch: number;
  readonly price: number;
  readonly preemptible: boolean;
  readonly gpu?: InstanceTypeGpu;
}

/** The cluster settings the choice depends on besides the types. */
export interface InstanceTypeRules {
  /** `Containers.ReserveExtraRAM` in bytes. Default {@link DEFAULT_RESERVE_EXTRA_RAM}. */
  reserveExtraRam?: number;
  /** `Containers.LocalKeepBlobBuffersPerVCPU`. Default 1, Arvados' default. */
  localKeepBlobBuffersPerVCPU?: number;
  /** `Containers.MaximumPriceFactor`: how much dearer than the cheapest fit a listed type may be. Default 1.5, Arvados' default. */
  maximumPriceFactor?: number;
}

/** What a container needs of an instance. */
export interface InstanceNeed {
  readonly vcpus: number;
  /** Bytes, with every reserve and the 5% headroom. */
  readonly ram: number;
  /** Bytes. */
  readonly scratch: number;
  readonly gpu: { readonly stack: string; readonly deviceCount: number; readonly vram: number; readonly driverVersion: string; readonly hardwareTarget: readonly string[] };
}

/** The outcome of {@link chooseInstanceTypes}. */
export type InstanceTypeChoice =
  /** No types configured: nothing to choose, nothing to refuse (`%I` is empty). */
  | { readonly kind: 'none-configured' }
  /** The types that fit, cheapest first; `types[0]` is the choice. */
  | { readonly kind: 'chosen'; readonly types: readonly InstanceType[] }
  /** No type fits: `reason` is one line for the container's owner, `considered` every type, cheapest first. */
  | { readonly kind: 'unsatisfiable'; readonly reason: string; readonly considered: readonly InstanceType[] };

// Configured RAM is what the provider sells; the kernel and firmware take
// some before a container gets any, so only 95% of it counts.
const DISCOUNT_CONFIGURED_RAM_PERCENT = 5;
const MiB = 2 ** 20;

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0;
}

/** What `container` needs of an instance under `rules`. */
export function instanceNeed(container: Pick<Container, 'runtime_constraints' | 'mounts' | 'container_image'>, rules: InstanceTypeRules = {}): InstanceNeed {
  const rc = container.runtime_constraints ?? {};
  const vcpus = num(rc.vcpus);
  let ram = num(rc.ram) + num(rc.keep_cache_ram) + (rules.reserveExtraRam ?? DEFAULT_RESERVE_EXTRA_RAM);
  const buffers = rules.localKeepBlobBuffersPerVCPU ?? 1;
  if (buffers > 0) {
    // A local keepstore: 200 MiB for itself, 64 MiB per buffer, +10% for its garbage collector.
    ram += 220 * MiB;
    ram += Math.floor((buffers * vcpus * 64 * MiB * 11) / 10);
  }
  ram = Math.floor((ram * 100) / (100 - DISCOUNT_CONFIGURED_RAM_PERCENT));
  return { vcpus, ram, scratch: estimateScratchSpace(container), gpu: gpuNeed(rc) };
}

function gpuNeed(rc: NonNullable<Container['runtime_constraints']>): InstanceNeed['gpu'] {
  const g = rc.gpu;
  if (g && num(g.device_count) > 0) {
    return { stack: g.stack ?? '', deviceCount: num(g.device_count), vram: num(g.vram), driverVersion: g.driver_version ?? '', hardwareTarget: g.hardware_target ?? [] };
  }
  const c = rc.cuda;
  if (c && num(c.device_count) > 0) {
    // Clusters older than the `gpu` constraint send `cuda` instead.
    return { stack: 'cuda', deviceCount: num(c.device_count), vram: 0, driverVersion: c.driver_version ?? '', hardwareTarget: c.hardware_capability ? [c.hardware_capability] : [] };
  }
  return { stack: g?.stack ?? '', deviceCount: 0, vram: 0, driverVersion: '', hardwareTarget: [] };
}

/** A version as a decimal number, strictly (`"12.0.12"` is not one); undefined if it is not. */
function version(v: string): number | undefined {
  if (!/^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/.test(v)) return undefined;
  return Number(v);
}

/** `a < b` as versions; undefined when either is not a version. */
function versionLess(a: string, b: string): boolean | undefined {
  const x = version(a);
  const y = version(b);
  return x === undefined || y === undefined ? undefined : x < y;
}

/** Why `it` cannot hold `need` (undefined: it can). */
function misfit(it: InstanceType, need: InstanceNeed, preemptible: boolean): string | undefined {
  if (it.scratch < need.scratch) return 'scratch';
  if (it.ram < need.ram) return 'RAM';
  if (it.vcpus < need.vcpus) return 'VCPUs';
  if (it.preemptible !== preemptible) return 'preemptible';
  const g = it.gpu;
  const want = need.gpu;
  if ((g?.stack ?? '') !== want.stack) return 'GPU stack';
  if ((g?.deviceCount ?? 0) < want.deviceCount) return 'GPUs';
  if ((g?.vram ?? 0) < want.vram) return 'VRAM';
  if (want.deviceCount > 0) {
    if (versionLess(g?.driverVersion ?? '', want.driverVersion) !== false) return 'GPU driver';
    if (!capable(g?.hardwareTarget ?? '', want)) return 'GPU hardware';
  }
  return undefined;
}

/** Whether an instance's GPU hardware target satisfies the request. */
function capable(target: string, want: InstanceNeed['gpu']): boolean {
  if (want.stack === 'rocm') return want.hardwareTarget.includes(target);
  // cuda: several targets name exact capabilities; one is a minimum.
  if (want.hardwareTarget.length > 1) return want.hardwareTarget.includes(target);
  if (want.hardwareTarget.length === 1) return versionLess(target, want.hardwareTarget[0]) === false;
  return false;
}

function byPreference(a: InstanceType, b: InstanceType): number {
  // Cheaper first; at one price more RAM, then more vCPUs, then more scratch; then by name, so the order is stable.
  return a.price - b.price || b.ram - a.ram || b.vcpus - a.vcpus || b.scratch - a.scratch || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

/**
 * The configured types `container` fits, cheapest first, and at most
 * `maximumPriceFactor` times dearer than the cheapest; or why none does.
 */
export function chooseInstanceTypes(types: readonly InstanceType[], container: Pick<Container, 'runtime_constraints' | 'scheduling_parameters' | 'mounts' | 'container_image'>, rules: InstanceTypeRules = {}): InstanceTypeChoice {
  if (types.length === 0) return { kind: 'none-configured' };
  const need = instanceNeed(container, rules);
  const considered = [...types].sort(byPreference);
  const stack = need.gpu.stack;
  if (need.gpu.deviceCount > 0 && stack !== 'cuda' && stack !== 'rocm') {
    return { kind: 'unsatisfiable', reason: `invalid GPU stack ${JSON.stringify(stack)}, expected "cuda" or "rocm"`, considered };
  }
  const preemptible = container.scheduling_parameters?.preemptible === true;
  const fits = considered.filter((it) => misfit(it, need, preemptible) === undefined);
  if (fits.length === 0) {
    return {
      kind: 'unsatisfiable',
      reason: `constraints not satisfiable by any configured instance type (needs ${need.vcpus} VCPUs, ${Math.ceil(need.ram / MiB)} MiB RAM, ${Math.ceil(need.scratch / MiB)} MiB scratch${need.gpu.deviceCount > 0 ? `, ${need.gpu.deviceCount} ${stack} GPUs` : ''}${preemptible ? ', preemptible' : ''})`,
      considered,
    };
  }
  const maxPrice = fits[0].price * Math.max(rules.maximumPriceFactor ?? 1.5, 1);
  return { kind: 'chosen', types: fits.filter((it, i) => i === 0 || it.price <= maxPrice) };
}

/** `name (4 VCPUs, 8192 MiB RAM, 100 GiB scratch, $0.25)`, for log records. */
export function describeInstanceType(it: InstanceType): string {
  const gpu = it.gpu && it.gpu.deviceCount > 0 ? `, ${it.gpu.deviceCount} ${it.gpu.stack} GPUs` : '';
  return `${it.name} (${it.vcpus} VCPUs, ${Math.floor(it.ram / MiB)} MiB RAM, ${Math.floor(it.scratch / MiB)} MiB scratch${gpu}${it.preemptible ? ', preemptible' : ''}, price ${it.price})`;
}

/**
 * How to release a container no type can hold: cancelled, the reason in
 * `runtime_status.error`, and every type considered in the log record.
 */
export function unsatisfiableRelease(choice: Extract<InstanceTypeChoice, { kind: 'unsatisfiable' }>): { reason: string; cancel: true; detail: string } {
  return {
    reason: choice.reason,
    cancel: true,
    detail: `instance types considered (cheapest first):\n${choice.considered.map((it) => `  ${describeInstanceType(it)}`).join('\n')}`,
  };
}

/**
 * The configured types `container` fits, cheapest first (the first is what
 * `%I` expands to), in the shape of Arvados' `InstanceType` JSON; empty when
 * none is configured or none fits. For the management API's `instance_types`.
 */
export function fittingInstanceTypes(types: readonly InstanceType[], container: Pick<Container, 'runtime_constraints' | 'scheduling_parameters' | 'mounts' | 'container_image'>, rules: InstanceTypeRules = {}): InstanceTypeView[] {
  const choice = chooseInstanceTypes(types, container, rules);
  if (choice.kind !== 'chosen') return [];
  return choice.types.map((it) => ({
    Name: it.name,
    VCPUs: it.vcpus,
    RAM: it.ram,
    Scratch: it.scratch,
    Price: it.price,
    Preemptible: it.preemptible,
    ...(it.gpu ? { GPU: { Stack: it.gpu.stack, DeviceCount: it.gpu.deviceCount, HardwareTarget: it.gpu.hardwareTarget, DriverVersion: it.gpu.driverVersion, VRAM: it.gpu.vram } } : {}),
  }));
}
