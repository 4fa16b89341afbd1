/** Defaults shared by the runners. @module */

/**
 * Arvados' default `Containers.ReserveExtraRAM`: RAM counted per container
 * on top of `ram + keep_cache_ram`, for crunch-run, arv-mount and the
 * container runtime (550 MiB).
 */
export const DEFAULT_RESERVE_EXTRA_RAM = 550 * 2 ** 20;
