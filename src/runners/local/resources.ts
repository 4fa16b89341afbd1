/**
 * The machine's vCPUs, RAM and GPUs as a first-come, first-served pool, as
 * the Go local dispatcher's resource throttle hands them out.
 *
 * Requests are served strictly in queue order: when the request at the head
 * does not fit yet, the ones behind it wait even if they would fit. That is
 * on purpose: a stream of small low-priority containers must not starve a
 * large high-priority one. The queue is first come, first served among equal
 * priorities, and a request with a higher `priority` goes ahead of lower
 * ones: the Dispatcher locks several containers at once, so they can reach
 * the runner out of priority order (Go locks one at a time, so its plain
 * FIFO was priority order within a poll).
 * A request that can never fit is rejected at once instead of joining the
 * queue, since it would block everything behind it for ever (the Go
 * version queued it, and the node ran nothing else again).
 *
 * @module
 */
import os from 'node:os';

/** GPU software stacks, as `runtime_constraints.gpu.stack` names them (`''`: no GPUs). */
export type GpuStack = 'cuda' | 'rocm' | '';

/** The GPUs a pool hands out. */
export interface GpuCapacity {
  /** The stack every GPU of this machine uses. */
  stack: GpuStack;
  /** Device ids as CUDA_VISIBLE_DEVICES / AMD_VISIBLE_DEVICES list them, e.g. `['0', '1']`. */
  ids: readonly string[];
}

/** What a pool holds in total. */
export interface ResourceCapacity {
  vcpus: number;
  /** Bytes. */
  ram: number;
  gpus: GpuCapacity;
}

/** Capacity overrides; anything left out is detected (see {@link detectCapacity}). */
export interface ResourceCapacityOverrides {
  vcpus?: number;
  /** Bytes. */
  ram?: number;
  gpus?: GpuCapacity;
}

/** What one container needs. */
export interface ResourceNeed {
  vcpus: number;
  /** Bytes. */
  ram: number;
  /** GPUs, if any; `stack` must match the pool's. */
  gpus?: { count: number; stack: string };
}

/** Resources held by one container until {@link Allocation.release}. */
export interface Allocation {
  readonly vcpus: number;
  readonly ram: number;
  readonly gpuStack: GpuStack;
  /** The GPU ids reserved, for CUDA_VISIBLE_DEVICES / AMD_VISIBLE_DEVICES. */
  readonly gpuIds: readonly string[];
  /** Whether `release()` was called. */
  readonly released: boolean;
  /** Gives the resources back. Calling it again does nothing. */
  release(): void;
}

/** What is free right now. */
export interface ResourceUsage {
  vcpus: number;
  ram: number;
  gpus: number;
}

/** A request that this pool could never fulfil, whatever is released. */
export class ResourceRequestError extends Error {
  override name = 'ResourceRequestError';
  /** One sentence per resource that does not fit, e.g. `needs 16 vCPUs, capacity is 4`. */
  readonly reasons: readonly string[];
  readonly need: ResourceNeed;

  constructor(need: ResourceNeed, reasons: readonly string[]) {
    super(`resource request cannot be fulfilled: ${reasons.join('; ')}`);
    this.need = need;
    this.reasons = reasons;
  }
}

const UNITS = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** `1536` -> `1.5 KiB`; binary units, at most one decimal. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  if (i === 0) return `${n} ${n === 1 ? 'byte' : 'bytes'}`;
  const text = Number.isInteger(v) ? String(v) : v.toFixed(1).replace(/\.0$/, '');
  return `${text} ${UNITS[i]}`;
}

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/** A comma list as CUDA_VISIBLE_DEVICES uses it; empty entries are dropped. */
function deviceList(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/**
 * This machine's capacity: `os.availableParallelism()` vCPUs, `os.totalmem()`
 * bytes of RAM, and GPUs from `CUDA_VISIBLE_DEVICES` (stack `cuda`) or,
 * if that lists none, `AMD_VISIBLE_DEVICES` (stack `rocm`). `overrides` win.
 */
export function detectCapacity(overrides: ResourceCapacityOverrides = {}, env: NodeJS.ProcessEnv = process.env): ResourceCapacity {
  let gpus = overrides.gpus;
  if (!gpus) {
    const cuda = deviceList(env.CUDA_VISIBLE_DEVICES);
    const rocm = deviceList(env.AMD_VISIBLE_DEVICES);
    gpus = cuda.length ? { stack: 'cuda', ids: cuda } : rocm.length ? { stack: 'rocm', ids: rocm } : { stack: '', ids: [] };
  }
  return {
    vcpus: overrides.vcpus ?? os.availableParallelism(),
    ram: overrides.ram ?? os.totalmem(),
    gpus: { stack: gpus.stack, ids: [...gpus.ids] },
  };
}

interface Waiter {
  need: ResourceNeed;
  priority: number;
  resolve: (a: Allocation) => void;
  reject: (err: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/**
 * A first-come, first-served pool of vCPUs, RAM and GPUs, higher
 * priorities first.
 *
 * @example
 * ```ts
 * const pool = new ResourcePool({ vcpus: 4, ram: 8 * 2 ** 30 });
 * const a = await pool.request({ vcpus: 2, ram: 2 ** 30 }, signal);
 * try {
 *   // run something with a.gpuIds ...
 * } finally {
 *   a.release();
 * }
 * ```
 */
export class ResourcePool {
  /** The total this pool hands out. */
  readonly capacity: Readonly<ResourceCapacity>;
  #vcpus: number;
  #ram: number;
  /** Free GPU ids, kept in capacity order so allocations are predictable. */
  #gpuIds: string[];
  readonly #gpuOrder: Map<string, number>;
  readonly #queue: Waiter[] = [];

  /** Detects what `overrides` leaves out (see {@link detectCapacity}). */
  constructor(overrides: ResourceCapacityOverrides = {}, env: NodeJS.ProcessEnv = process.env) {
    const cap = detectCapacity(overrides, env);
    if (!Number.isInteger(cap.vcpus) || cap.vcpus < 1) throw new RangeError(`vcpus must be an integer >= 1, got ${cap.vcpus}`);
    if (!Number.isSafeInteger(cap.ram) || cap.ram < 1) throw new RangeError(`ram must be an integer number of bytes >= 1, got ${cap.ram}`);
    if (!['cuda', 'rocm', ''].includes(cap.gpus.stack)) throw new RangeError(`GPU stack must be "cuda", "rocm" or "", got ${JSON.stringify(cap.gpus.stack)}`);
    if (new Set(cap.gpus.ids).size !== cap.gpus.ids.length) throw new RangeError(`GPU ids must be unique: ${cap.gpus.ids.join(',')}`);
    if (cap.gpus.ids.some((id) => /[,\s]/.test(id))) throw new RangeError(`GPU ids must not contain commas or spaces: ${cap.gpus.ids.join(',')}`);
    if (cap.gpus.ids.length > 0 && cap.gpus.stack === '') throw new RangeError('GPU ids need a stack ("cuda" or "rocm")');
    this.capacity = Object.freeze({ vcpus: cap.vcpus, ram: cap.ram, gpus: Object.freeze({ stack: cap.gpus.stack, ids: Object.freeze([...cap.gpus.ids]) }) });
    this.#vcpus = cap.vcpus;
    this.#ram = cap.ram;
    this.#gpuIds = [...cap.gpus.ids];
    this.#gpuOrder = new Map(cap.gpus.ids.map((id, i) => [id, i]));
  }

  /** What is free right now. */
  get available(): ResourceUsage {
    return { vcpus: this.#vcpus, ram: this.#ram, gpus: this.#gpuIds.length };
  }

  /** Requests waiting for resources. */
  get waiting(): number {
    return this.#queue.length;
  }

  /**
   * Why `need` could never be met by this pool, one sentence per resource;
   * empty if it can (once enough is released).
   */
  check(need: ResourceNeed): string[] {
    const cap = this.capacity;
    const reasons: string[] = [];
    const gpus = need.gpus?.count ?? 0;
    const stack = need.gpus?.stack ?? '';
    if (!Number.isFinite(need.vcpus) || need.vcpus < 1) reasons.push(`needs ${need.vcpus} vCPUs, at least 1 is required`);
    else if (need.vcpus > cap.vcpus) reasons.push(`needs ${plural(need.vcpus, 'vCPU')}, capacity is ${cap.vcpus}`);
    if (!Number.isFinite(need.ram) || need.ram < 1) reasons.push(`needs ${need.ram} bytes of RAM, at least 1 byte is required`);
    else if (need.ram > cap.ram) reasons.push(`needs ${formatBytes(need.ram)} RAM, capacity is ${formatBytes(cap.ram)}`);
    if (!Number.isInteger(gpus) || gpus < 0) reasons.push(`needs ${gpus} GPUs, which is not a count`);
    else if (gpus > 0) {
      if (cap.gpus.ids.length === 0) reasons.push(`needs ${plural(gpus, 'GPU')} (${stack || 'no stack given'}), this node has none`);
      else if (stack !== cap.gpus.stack) reasons.push(`needs ${stack || 'unspecified'} GPUs, this node's GPUs are ${cap.gpus.stack}`);
      else if (gpus > cap.gpus.ids.length) reasons.push(`needs ${plural(gpus, 'GPU')}, capacity is ${cap.gpus.ids.length}`);
    }
    return reasons;
  }

  /** True if `need` would be served at once: nothing waits ahead of it and it fits now. */
  fitsNow(need: ResourceNeed, priority = 0): boolean {
    return !this.#queue.some((x) => x.priority >= priority) && this.check(need).length === 0 && this.#fits(need);
  }

  /**
   * Resolves with an allocation once `need` fits and every request ahead of
   * it has been served: those with a higher `priority`, and older ones with
   * the same. Rejects at once with {@link ResourceRequestError} if it can
   * never fit, and with `signal.reason` if `signal` aborts first (the request
   * then leaves the queue, so it holds up nobody).
   */
  request(need: ResourceNeed, signal?: AbortSignal, priority = 0): Promise<Allocation> {
    const reasons = this.check(need);
    if (reasons.length) return Promise.reject(new ResourceRequestError({ ...need }, reasons));
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<Allocation>((resolve, reject) => {
      const w: Waiter = { need: { ...need, ...(need.gpus ? { gpus: { ...need.gpus } } : {}) }, priority, resolve, reject, signal };
      if (signal) {
        w.onAbort = () => {
          const i = this.#queue.indexOf(w);
          if (i < 0) return;
          this.#queue.splice(i, 1);
          reject(signal.reason);
          // The head may have changed, and the new head may fit.
          this.#pump();
        };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      const behind = this.#queue.findIndex((x) => x.priority < priority);
      if (behind < 0) this.#queue.push(w);
      else this.#queue.splice(behind, 0, w);
      this.#pump();
    });
  }

  #fits(need: ResourceNeed): boolean {
    return need.vcpus <= this.#vcpus && need.ram <= this.#ram && (need.gpus?.count ?? 0) <= this.#gpuIds.length;
  }

  /** Serves waiters from the head for as long as the head fits. */
  #pump(): void {
    while (this.#queue.length > 0 && this.#fits(this.#queue[0].need)) {
      const w = this.#queue.shift()!;
      if (w.onAbort) w.signal?.removeEventListener('abort', w.onAbort);
      w.resolve(this.#allocate(w.need));
    }
  }

  #allocate(need: ResourceNeed): Allocation {
    const count = need.gpus?.count ?? 0;
    const gpuIds = Object.freeze(this.#gpuIds.splice(0, count));
    this.#vcpus -= need.vcpus;
    this.#ram -= need.ram;
    let released = false;
    const alloc: Allocation = {
      vcpus: need.vcpus,
      ram: need.ram,
      gpuStack: count > 0 ? this.capacity.gpus.stack : '',
      gpuIds,
      get released() {
        return released;
      },
      release: () => {
        if (released) return;
        released = true;
        this.#vcpus += need.vcpus;
        this.#ram += need.ram;
        this.#gpuIds.push(...gpuIds);
        this.#gpuIds.sort((a, b) => this.#gpuOrder.get(a)! - this.#gpuOrder.get(b)!);
        this.#pump();
      },
    };
    return alloc;
  }
}
