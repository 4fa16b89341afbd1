/**
 * crunch-run processes a previous dispatcher on this host started: after
 * that dispatcher was killed (SIGKILL kills only itself), its crunch-run
 * children go on and finish their containers. A dispatcher that adopts
 * such a container finds the process here and follows it, instead of
 * starting a second crunch-run or cancelling a container that is running.
 * Linux `/proc` only; elsewhere nothing is found.
 *
 * @module
 */
import { readFileSync, readdirSync } from 'node:fs';
import { basename } from 'node:path';

/** The process's state letter from `/proc/<pid>/stat`, if it exists. */
function stateOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
}

/** Whether `pid` is alive (not gone, not a zombie). */
export function processAlive(pid: number): boolean {
  const s = stateOf(pid);
  return s !== undefined && s !== 'Z' && s !== 'X';
}

/**
 * The pid of a live process on this host running `command` (by path or
 * name) whose last argument is `uuid`, as the local runner starts
 * crunch-run; undefined if there is none (or no `/proc`).
 */
export function findCrunchRun(uuid: string, command: string): number | undefined {
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return undefined;
  }
  const want = basename(command);
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
    } catch {
      continue;
    }
    if (argv.at(-1) !== uuid || argv.length < 2) continue;
    // The command itself, or a script run by its interpreter (`node crunch-run ...`).
    if (!argv.slice(0, 2).some((a) => a === command || basename(a) === want)) continue;
    if (processAlive(pid)) return pid;
  }
  return undefined;
}
