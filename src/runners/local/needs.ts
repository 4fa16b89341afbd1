/**
 * What containers ask of the local resource pool: a container's need from
 * its runtime constraints, what of it is missing now, and how many
 * candidates the pool could start, so that no more are locked than can run.
 *
 * @module
 */
import type { Container } from '../../types.js';
import { formatBytes, type ResourceNeed, type ResourcePool } from './resources.js';

/**
 * What a container needs from the pool: `vcpus`, `ram + keep_cache_ram +
 * reserveExtraRam`, and `gpu.device_count` GPUs of `gpu.stack` (or the
 * legacy `cuda.device_count`).
 */
export function containerNeed(c: Readonly<Container>, reserveExtraRam: number): ResourceNeed {
  const rc = c.runtime_constraints ?? {};
  const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  const need: ResourceNeed = { vcpus: num(rc.vcpus), ram: num(rc.ram) + num(rc.keep_cache_ram) + reserveExtraRam };
  const gpu = rc.gpu && num(rc.gpu.device_count) > 0 ? { count: num(rc.gpu.device_count), stack: rc.gpu.stack ?? '' } : undefined;
  const cuda = rc.cuda && num(rc.cuda.device_count) > 0 ? { count: num(rc.cuda.device_count), stack: 'cuda' } : undefined;
  const gpus = gpu ?? cuda;
  if (gpus) need.gpus = gpus;
  return need;
}

/** What is wrong with a record's `vcpus`/`ram` (not positive integers), or undefined. */
export function nonsenseSizes(c: Readonly<Container>): string | undefined {
  const rc = c.runtime_constraints ?? {};
  const ok = (x: unknown): boolean => typeof x === 'number' && Number.isInteger(x) && x >= 1;
  if (!ok(rc.vcpus)) return `runtime_constraints.vcpus is ${JSON.stringify(rc.vcpus ?? null)}`;
  if (!ok(rc.ram)) return `runtime_constraints.ram is ${JSON.stringify(rc.ram ?? null)}`;
  return undefined;
}

/** What does not fit now, e.g. `needs 16 vCPUs, 4 free; needs 8 GiB RAM, 2 GiB free`. */
export function shortfall(pool: ResourcePool, need: ResourceNeed): string {
  const free = pool.available;
  const short: string[] = [];
  if (need.vcpus > free.vcpus) short.push(`needs ${need.vcpus} vCPU${need.vcpus === 1 ? '' : 's'}, ${free.vcpus} free`);
  if (need.ram > free.ram) short.push(`needs ${formatBytes(need.ram)} RAM, ${formatBytes(free.ram)} free`);
  const gpus = need.gpus?.count ?? 0;
  if (gpus > free.gpus) short.push(`needs ${gpus} GPU${gpus === 1 ? '' : 's'}, ${free.gpus} free`);
  return short.length ? short.join('; ') : 'behind containers that were waiting first';
}

/**
 * How many of `candidates` (in lock order) the pool can start: those that
 * fit, in order, into what is free and not `promised` to containers that
 * are starting, stopping at the first that does not fit (it must not be
 * jumped, as in the pool itself); 0 while any container waits for
 * resources. A container that can never fit counts, so that it is locked
 * and cancelled with the reason. Without candidates, the free vCPUs (every
 * container needs at least one).
 */
export function lockable(pool: ResourcePool, promised: Iterable<ResourceNeed>, candidates: readonly Readonly<Container>[], needOf: (c: Readonly<Container>) => ResourceNeed): number {
  if (pool.waiting > 0) return 0;
  const free = { ...pool.available };
  for (const need of promised) {
    free.vcpus -= need.vcpus;
    free.ram -= need.ram;
    free.gpus -= need.gpus?.count ?? 0;
  }
  if (candidates.length === 0) return Math.max(0, Math.floor(free.vcpus));
  let n = 0;
  for (const c of candidates) {
    const need = needOf(c);
    if (pool.check(need).length > 0) {
      n++;
      continue;
    }
    const gpus = need.gpus?.count ?? 0;
    if (need.vcpus > free.vcpus || need.ram > free.ram || gpus > free.gpus) break;
    free.vcpus -= need.vcpus;
    free.ram -= need.ram;
    free.gpus -= gpus;
    n++;
  }
  return n;
}
