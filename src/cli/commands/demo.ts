/**
 * `arvados-dispatch demo`: the local runner at work on an embedded fake
 * cluster. It starts FakeArvados on 127.0.0.1, queues containers of mixed
 * priorities and sizes for a small simulated node (so queueing shows),
 * dispatches them with a simulated crunch-run, cancels one midway as its
 * user would, and ends with a summary once every container is final.
 * No credentials and no network beyond 127.0.0.1.
 *
 * @module
 */
import { Dispatcher } from '../../dispatcher/dispatcher.js';
import { LocalRunner } from '../../runners/local/local-runner.js';
import { formatBytes, type ResourceCapacity } from '../../runners/local/resources.js';
import { crunchRunSimPath } from '../../testing/crunch-run-sim.js';
import { FakeArvados } from '../../testing/fake-arvados.js';
import type { Container, ContainerState } from '../../types.js';
import { HELP_OPTION, JSON_OPTION, Options, formatHelp, parseOptions, type OptionTable } from '../args.js';
import { CliError, ExitCode, UsageError } from '../errors.js';
import { LiveBlock } from '../live.js';
import { Output, clockTime } from '../output.js';
import { Reporter } from '../report.js';
import { runSession } from '../session.js';
import { localSession } from '../local-session.js';
import { seededRandom } from '../../prng.js';

/** One line for the overall help. */
export const summary = 'dispatch simulated containers on an embedded fake cluster';

const GiB = 2 ** 30;
const MiB = 2 ** 20;
const MAX_CONTAINERS = 200;
/** The demo gives up if the containers are not all final by then. */
const DEADLINE = 120_000;
const CAPACITY: ResourceCapacity = { vcpus: 4, ram: 8 * GiB, gpus: { stack: 'cuda', ids: ['0', '1'] } };

const OPTIONS: OptionTable = {
  containers: { type: 'string', metavar: 'N', default: '20', help: `containers to queue (1-${MAX_CONTAINERS})` },
  json: JSON_OPTION,
  help: HELP_OPTION,
};

/** The `--help` text. */
export function help(): string {
  return formatHelp(
    'arvados-dispatch demo [--containers N]',
    'Starts a fake Arvados API server on 127.0.0.1, queues N containers of mixed\n' +
      `priorities and sizes for a simulated node with ${CAPACITY.vcpus} vCPUs, ${formatBytes(CAPACITY.ram)} RAM and\n` +
      `${CAPACITY.gpus.ids.length} GPUs, and dispatches them with the local runner and a simulated\n` +
      'crunch-run. One container can never fit (cancelled at once) and one is\n' +
      'cancelled by its user midway. No credentials or network are needed. On a\n' +
      'terminal, progress is redrawn in place; otherwise one line per event.',
    OPTIONS,
    'Exit status: 0 once every container is final (or after SIGINT/SIGTERM),\n1 on failure, 2 on a bad command line.',
  );
}


/** What the demo queues; `role` marks the special containers. */
interface Planned {
  attrs: Partial<Container>;
  role: 'long' | 'huge' | 'gpu' | 'normal';
}

function plan(n: number): Planned[] {
  const rand = seededRandom(23075);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const out: Planned[] = [];
  for (let i = 0; i < n; i++) {
    if (i === 0) {
      // Highest priority, so it starts first; its user cancels it midway.
      out.push({ role: 'long', attrs: { priority: 1000, runtime_constraints: { vcpus: 1, ram: GiB }, command: ['sleep', '60'] } });
    } else if (i === 1) {
      out.push({ role: 'huge', attrs: { priority: 900, runtime_constraints: { vcpus: 16, ram: GiB }, command: ['sleep', '1'] } });
    } else if (i === 2) {
      out.push({
        role: 'gpu',
        attrs: { priority: 850, runtime_constraints: { vcpus: 1, ram: 2 * GiB, gpu: { device_count: 1, stack: 'cuda' } }, command: ['sleep', '0.8'] },
      });
    } else {
      const seconds = (0.3 + rand() * 0.9).toFixed(2);
      out.push({
        role: 'normal',
        attrs: {
          priority: 1 + Math.floor(rand() * 800),
          runtime_constraints: { vcpus: pick([1, 1, 1, 2, 2, 3]), ram: pick([256, 512, 1024, 1536, 2048, 3072]) * MiB },
          command: ['sleep', seconds],
        },
      });
    }
  }
  return out;
}

const FINAL = new Set<ContainerState>(['Complete', 'Cancelled']);

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

function runtimeOf(c: Container): string {
  if (!c.started_at || !c.finished_at) return '-';
  return seconds(Date.parse(c.finished_at) - Date.parse(c.started_at));
}

/** Runs the command; resolves to the exit status. */
export async function run(argv: string[]): Promise<number> {
  const opts = new Options(parseOptions(argv, OPTIONS, 'demo'), 'demo');
  if (opts.flag('help')) {
    process.stdout.write(help());
    return ExitCode.OK;
  }
  const n = opts.integer('containers', 20);
  if (n > MAX_CONTAINERS) throw new UsageError(`--containers: at most ${MAX_CONTAINERS}; see 'arvados-dispatch demo --help'`);
  const json = opts.flag('json');
  const tty = !json && process.stdout.isTTY === true;
  const out = new Output({ json });
  const began = Date.now();

  const fake = await new FakeArvados().start();
  try {
    return await demo(n, fake, out, tty, began);
  } finally {
    await fake.stop();
  }
}

async function demo(n: number, fake: FakeArvados, out: Output, tty: boolean, began: number): Promise<number> {
  // Self-signed certificate: the simulated crunch-run gets ARVADOS_API_HOST_INSECURE=1 through credentialsEnv().
  const client = fake.client({ insecure: true, retryDelay: 50, maxRetryDelay: 500, timeout: 5_000 });
  out.addSecret(client.credentialsEnv().ARVADOS_API_TOKEN);
  const planned = plan(n);
  const containers = planned.map((p) => fake.addContainer(p.attrs));
  const role = new Map(containers.map((c, i) => [c.uuid, planned[i].role]));
  // The priority each was queued with (the cancelled one ends at 0).
  const queuedPriority = new Map(containers.map((c) => [c.uuid, c.priority]));
  const long = containers.find((c) => role.get(c.uuid) === 'long');

  const runner = new LocalRunner({
    crunchRunCommand: process.execPath,
    crunchRunArgs: [crunchRunSimPath],
    capacity: CAPACITY,
    // Less than Arvados' 550 MiB, so that the small node holds a few containers at once.
    reserveExtraRam: 256 * MiB,
    stopGrace: 5_000,
    killGrace: 1_000,
  });
  // The runner, not just its runContainer: the Dispatcher then asks its capacity()
  // before each round of locks and locks only what fits, as `arvados-dispatch local` does.
  // The Dispatcher owns the runner: it closes it once its containers settle.
  const d = new Dispatcher({ client, runner, pollInterval: 100, secondSignal: 'exit', shutdownTimeout: 10_000 });
  const session = localSession(runner);
  const reporter = new Reporter(out, d).watch(runner);

  // What the live view shows about containers with a crunch-run or waiting for one.
  const started = new Map<string, { pid: number; at: number; vcpus: number; ram: number; gpus: readonly string[] }>();
  const waiting = new Set<string>();
  const events = runner.events;
  events.on('waiting', (e) => waiting.add(e.uuid));
  events.on('started', (e) => {
    waiting.delete(e.uuid);
    started.set(e.uuid, { pid: e.pid, at: Date.now(), vcpus: e.vcpus, ram: e.ram, gpus: e.gpuIds });
  });
  events.on('exited', (e) => started.delete(e.uuid));
  events.on('skipped', (e) => waiting.delete(e.uuid));
  events.on('finished', (uuid) => waiting.delete(uuid));

  const cap = runner.pool.capacity;
  const banner =
    `arvados-dispatch demo: ${n} containers, simulated node with ${cap.vcpus} vCPUs, ${formatBytes(cap.ram)} RAM, ` +
    `${cap.gpus.ids.length} GPUs; API ${fake.url}`;

  let cancelledByUser: string | undefined;
  let allFinal = false;
  let timedOut = false;
  const snapshot = (): Container[] => containers.map((c) => fake.container(c.uuid)!);
  const check = (): void => {
    const now = snapshot();
    const done = now.filter((c) => FINAL.has(c.state)).length;
    // Midway, the user of the long container cancels its request, as they would in Workbench.
    if (long && !cancelledByUser) {
      const l = now.find((c) => c.uuid === long.uuid)!;
      const t = started.get(long.uuid);
      if (l.state === 'Running' && t && (done >= Math.ceil((n - 2) / 3) || Date.now() - t.at > 1500)) {
        cancelledByUser = long.uuid;
        fake.setPriority(long.uuid, 0);
        out.event('demo', `${long.uuid}: its user cancels the request (priority -> 0) while it runs`, { uuid: long.uuid });
      }
    }
    if (!allFinal && done === n) {
      allFinal = true;
      out.event('demo', `all ${n} containers are final; stopping`, {});
      void d.stop();
    } else if (!allFinal && !timedOut && Date.now() - began > DEADLINE) {
      timedOut = true;
      out.warn(`not all containers are final after ${seconds(DEADLINE)}; stopping`);
      void d.stop();
    }
  };

  // On a terminal: event lines feed the "recent" list of a block redrawn in place.
  const recent: string[] = [];
  let view: LiveBlock | undefined;
  if (tty) {
    out.setSink((_stream, line) => {
      recent.push(line);
      if (recent.length > 200) recent.splice(0, 100);
    });
    view = new LiveBlock(process.stdout, () => render(banner, snapshot(), started, waiting, runner, recent, began));
  } else {
    out.event('demo', banner, { containers: n, vcpus: cap.vcpus, ram: cap.ram, gpus: cap.gpus.ids, api: fake.url });
  }

  const ticker = setInterval(check, 50);
  view?.start(100);
  try {
    await runSession({
      out,
      dispatcher: d,
      runner: session,
      reporter,
      statusInterval: tty ? 0 : 2_000,
      beforeForcedExit: () => view?.stop(),
    });
  } finally {
    clearInterval(ticker);
    view?.stop();
    out.setSink(undefined);
  }

  const final = snapshot();
  printSummary(out, final, queuedPriority, cancelledByUser, Date.now() - began);
  if (timedOut) throw new CliError(`the demo did not finish within ${seconds(DEADLINE)}`);
  return ExitCode.OK;
}

/** The live block: progress bar, counts, resources in use, what runs and waits, recent events. */
function render(
  banner: string,
  now: Container[],
  started: Map<string, { pid: number; at: number; vcpus: number; ram: number; gpus: readonly string[] }>,
  waiting: Set<string>,
  runner: LocalRunner,
  recent: string[],
  began: number,
): string[] {
  const count = (s: ContainerState): number => now.filter((c) => c.state === s).length;
  const total = now.length;
  const done = count('Complete') + count('Cancelled');
  const utf8 = /utf-?8/i.test(`${process.env.LC_ALL ?? ''}${process.env.LC_CTYPE ?? ''}${process.env.LANG ?? ''}`);
  const [full, empty] = utf8 ? ['█', '░'] : ['#', '.'];
  const width = 40;
  const filled = Math.round((done / Math.max(1, total)) * width);
  const cap = runner.pool.capacity;
  const free = runner.pool.available;
  const lines = [
    banner,
    '',
    ` [${full.repeat(filled)}${empty.repeat(width - filled)}] ${done}/${total} final   ${seconds(Date.now() - began)}`,
    ` queued ${count('Queued')}   locked ${count('Locked')}   running ${count('Running')}   complete ${count('Complete')}   cancelled ${count('Cancelled')}`,
    ` in use: ${cap.vcpus - free.vcpus}/${cap.vcpus} vCPUs   ${formatBytes(cap.ram - free.ram)} / ${formatBytes(cap.ram)} RAM   ${cap.gpus.ids.length - free.gpus}/${cap.gpus.ids.length} GPUs`,
    '',
  ];
  const byUuid = new Map(now.map((c) => [c.uuid, c]));
  for (const [uuid, s] of started) {
    const c = byUuid.get(uuid);
    const gpu = s.gpus.length ? `  GPU ${s.gpus.join(',')}` : '';
    lines.push(
      ` running  ${uuid}  prio ${String(c?.priority ?? '').padStart(4)}  ${s.vcpus} vCPU  ${formatBytes(s.ram).padStart(8)}  pid ${s.pid}  ${seconds(Date.now() - s.at)}${gpu}`,
    );
  }
  // In the pool's order: priority first.
  const w = [...waiting].sort((a, b) => (byUuid.get(b)?.priority ?? 0) - (byUuid.get(a)?.priority ?? 0));
  for (const uuid of w.slice(0, 4)) {
    const c = byUuid.get(uuid);
    const rc = c?.runtime_constraints ?? {};
    lines.push(` waiting  ${uuid}  prio ${String(c?.priority ?? '').padStart(4)}  ${rc.vcpus ?? '?'} vCPU  ${formatBytes(rc.ram ?? 0).padStart(8)}  (for resources)`);
  }
  if (w.length > 4) lines.push(` ... and ${w.length - 4} more waiting`);
  lines.push('', ' recent events:');
  for (const l of recent.slice(-6)) lines.push(`   ${l}`);
  return lines;
}

function printSummary(
  out: Output,
  final: Container[],
  queuedPriority: Map<string, number>,
  cancelledByUser: string | undefined,
  elapsed: number,
): void {
  const prio = (c: Container): number => queuedPriority.get(c.uuid) ?? c.priority;
  const complete = final.filter((c) => c.state === 'Complete').length;
  const cancelled = final.filter((c) => c.state === 'Cancelled').length;
  const other = final.length - complete - cancelled;
  const noteOf = (c: Container): string => {
    if (c.uuid === cancelledByUser) return 'its user cancelled it while it ran';
    const err = c.runtime_status?.error;
    if (typeof err === 'string' && err) return err.replace(/^container resource request cannot be fulfilled on this node: /, 'never fits: ');
    const gpus = c.runtime_constraints?.gpu?.device_count ?? 0;
    if (gpus) return `used ${gpus} GPU(s)`;
    return '';
  };
  if (out.json) {
    for (const c of final) {
      out.event('container', `${c.uuid} ${c.state}`, { uuid: c.uuid, priority: prio(c), state: c.state, exit_code: c.exit_code ?? null, note: noteOf(c) });
    }
    out.event('summary', `${final.length} containers in ${seconds(elapsed)}: ${complete} complete, ${cancelled} cancelled`, {
      containers: final.length,
      complete,
      cancelled,
      not_final: other,
      elapsed_ms: elapsed,
    });
    return;
  }
  const sorted = [...final].sort((a, b) => prio(b) - prio(a) || (a.created_at ?? '').localeCompare(b.created_at ?? ''));
  const rows = sorted.map((c) => {
    const rc = c.runtime_constraints ?? {};
    return [
      c.uuid,
      String(prio(c)),
      String(rc.vcpus ?? ''),
      formatBytes(rc.ram ?? 0),
      c.state,
      c.exit_code === null || c.exit_code === undefined ? '-' : String(c.exit_code),
      runtimeOf(c),
      noteOf(c),
    ];
  });
  const head = ['CONTAINER', 'PRIO', 'CPUS', 'RAM', 'STATE', 'EXIT', 'TIME', 'NOTE'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const right = new Set([1, 2, 3, 5, 6]);
  const fmt = (r: string[]): string =>
    `  ${r.map((cell, i) => (i === r.length - 1 ? cell : right.has(i) ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))).join('  ')}`.trimEnd();
  const status = other ? `, ${other} not final (interrupted)` : '';
  out.text(
    [
      '',
      `Summary: ${final.length} containers in ${seconds(elapsed)} (finished ${clockTime(new Date())}): ${complete} Complete, ${cancelled} Cancelled${status}`,
      '',
      fmt(head),
      ...rows.map(fmt),
      '',
    ].join('\n'),
  );
}
