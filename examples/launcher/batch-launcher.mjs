#!/usr/bin/env node
// A dispatcher embedded in a batch job: submit this script as a Slurm (or
// other batch system) job, and for the life of the allocation it runs Arvados
// containers on the allocation's own cores and memory, with crunch-run as a
// child process per container. It ends by itself once the queue has been
// empty for LAUNCHER_IDLE_EXIT seconds, or when the batch system ends the
// job (SIGTERM at the time limit): either way the dispatcher stops cleanly.
//
//   sbatch --exclusive --time=4:00:00 --export=ALL batch-launcher.mjs
//
// Settings (environment):
//   ARVADOS_API_HOST, ARVADOS_API_TOKEN   a token of its own: one dispatcher per token
//   CRUNCH_RUN            crunch-run, or a wrapper script around it (default: crunch-run)
//   SLURM_CPUS_ON_NODE    cores to use (default: all of this host's)
//   SLURM_MEM_PER_NODE    MiB of memory to use (default: all of this host's)
//   LAUNCHER_IDLE_EXIT    seconds of empty queue before exiting (default 300; 0: never)
//   LAUNCHER_POLL         seconds between queue polls (default 10)
import { Dispatcher, LocalRunner } from 'arvados-dispatch';

const env = process.env;
const seconds = (name, fallback) => {
  const value = Number(env[name] ?? fallback);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name}: not a number of seconds: ${env[name]}`);
  return value * 1000;
};
const idleExit = seconds('LAUNCHER_IDLE_EXIT', 300);

// The allocation, not the whole node, is ours: size the runner's pool to it.
const capacity = {};
if (env.SLURM_CPUS_ON_NODE) capacity.vcpus = Number(env.SLURM_CPUS_ON_NODE);
if (env.SLURM_MEM_PER_NODE) capacity.ram = Number(env.SLURM_MEM_PER_NODE) * 2 ** 20;

const runner = new LocalRunner({ crunchRunCommand: env.CRUNCH_RUN ?? 'crunch-run', capacity });
runner.on('started', ({ uuid, pid }) => console.log(`${uuid}: crunch-run started (pid ${pid})`));
runner.on('finished', ({ uuid, state }) => console.log(`${uuid}: ${state}`));

// ArvadosClient.fromEnv() by default; SIGINT/SIGTERM/SIGQUIT stop it gracefully.
// Given as `runner` (not its runContainer), the runner is asked before each
// round of locks how many queued containers fit the allocation, so only those
// are locked, as `arvados-dispatch local` does; the dispatcher closes it on stop.
const dispatcher = new Dispatcher({ runner, pollInterval: seconds('LAUNCHER_POLL', 10) });
dispatcher.on('warning', (message) => console.error(`warning: ${message}`));

// 'idle' ends every poll cycle that found nothing to do (nothing queued for
// us, nothing running); any other cycle starts the count again.
let idleSince;
dispatcher.on('cycle', (status) => {
  if (status.runners > 0 || status.queued > 0) idleSince = undefined;
});
dispatcher.on('idle', () => {
  idleSince ??= Date.now();
  if (idleExit > 0 && Date.now() - idleSince >= idleExit) {
    console.log('queue drained: stopping');
    void dispatcher.stop();
  }
});

try {
  await dispatcher.run();
  console.log('dispatcher stopped');
} catch (err) {
  // A rejected token or an unreachable API: one line, and a failed job.
  console.error(`batch-launcher: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
} finally {
  await runner.close(); // interrupts any crunch-run still going and waits for it
}
