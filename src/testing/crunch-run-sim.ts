/**
 * The crunch-run simulator: one stand-in for crunch-run, used by the demo, by
 * this package's tests and by yours. Run it as a plain Node script (only
 * Node builtins at run time, so it starts fast, also as a Slurm job):
 *
 * ```sh
 * node node_modules/arvados-dispatch/dist/testing/crunch-run-sim.js [--mode=M] [--work=MS] [--code=N] [--record=DIR] [...] <container-uuid>
 * ```
 *
 * Like crunch-run it takes its credentials from `ARVADOS_API_HOST`,
 * `ARVADOS_API_TOKEN` and `ARVADOS_API_HOST_INSECURE` only (never from its
 * command line), sets its container Running, works, and finalizes it; on
 * SIGINT, SIGTERM or SIGQUIT (the signals crunch-run stops on) it sets it
 * Cancelled and exits 0. Arguments it does not know (e.g.
 * `--runtime-engine=docker`) are ignored, as a dispatcher passes them. See {@link CrunchRunSimMode} for the modes and
 * {@link CrunchRunSimOptions} for where settings come from.
 *
 * @module
 */
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onStopSignals } from '../dispatcher/signals.js';
import { describeError } from '../util/errors.js';
import { Redactor } from '../util/redact.js';
import { sleep } from '../util/sleep.js';
import { baseUrl, rawRequest, type RawResponse } from './http.js';

/**
 * What the simulator does:
 * - `complete` (default): Running, work, Complete with exit code 0.
 * - `fail`: Running, work, Complete with exit code `code` (default 1), as a
 *   failed user command does.
 * - `hang`: Running, then wait for a signal.
 * - `release` (alias `wait-release`): Running, then Complete once the file
 *   `<record>/<uuid>.release` exists.
 * - `locked-release`: leave the container Locked until the file
 *   `<record>/<uuid>.release` exists, then Running and Complete (a crunch-run
 *   still preparing when its dispatcher dies).
 * - `stubborn`: Running, then ignore SIGINT, SIGTERM and SIGQUIT (SIGKILL ends it).
 * - `exit`: Running, then exit with `code` (default 3) without finalizing.
 * - `exit-locked`: exit with `code` at once, leaving the container Locked.
 * - `orphan`: like `complete`, but first start a grandchild that keeps
 *   stdout/stderr open for a minute (its pid in `<record>/<uuid>.grandchild`).
 * - `mute`: Running, then wait; on a stop signal exit at once (128 + signal
 *   number) without telling the API, like a crunch-run that died.
 * - `oom`: Running, then allocate (and touch) 16 MiB every 50 ms until the
 *   batch system's memory limit kills it, like a container that outgrew its
 *   RAM request.
 * - `leak-token`: print token-like text (the token alone, as a v2 token's
 *   secret, in `Authorization:` headers, across a 16 KiB line boundary and
 *   across two writes) on stdout and stderr, then behave like `complete`:
 *   for tests that a dispatcher masks what crunch-run prints.
 */
export type CrunchRunSimMode =
  | 'complete'
  | 'fail'
  | 'hang'
  | 'release'
  | 'locked-release'
  | 'stubborn'
  | 'exit'
  | 'exit-locked'
  | 'orphan'
  | 'mute'
  | 'oom'
  | 'leak-token';

/** Every mode, in the order documented on {@link CrunchRunSimMode}. */
export const CRUNCH_RUN_SIM_MODES: readonly CrunchRunSimMode[] = [
  'complete',
  'fail',
  'hang',
  'release',
  'locked-release',
  'stubborn',
  'exit',
  'exit-locked',
  'orphan',
  'mute',
  'oom',
  'leak-token',
];

/** The settings, by argument name; environment names are `CRUNCH_RUN_SIM_` + upper case (`CRUNCH_RUN_SIM_MODE`, ...). */
export type CrunchRunSimSetting = 'mode' | 'work' | 'code' | 'record';
type Setting = CrunchRunSimSetting;

const ENV_NAMES: Record<Setting, string> = {
  mode: 'CRUNCH_RUN_SIM_MODE',
  work: 'CRUNCH_RUN_SIM_WORK',
  code: 'CRUNCH_RUN_SIM_CODE',
  record: 'CRUNCH_RUN_SIM_RECORD',
};

/**
 * Options of {@link simulateCrunchRun}. Each setting (`mode`, `work` in ms,
 * exit `code`, `record` directory) comes from, in order:
 * 1. the argument `--<name>=VALUE`;
 * 2. the process environment `CRUNCH_RUN_SIM_<NAME>` (a Slurm job's
 *    environment, or a runner's `environment` option);
 * 3. the container record's `environment`, read from the API only when no
 *    mode was given by 1 or 2: that is how each container of one dispatcher
 *    gets its own behaviour; `work` then also defaults to N s for a
 *    container whose command is `sleep N` (the demo's containers);
 * 4. the defaults: mode `complete`, work 50 ms, code 1 for `fail` and 3 for
 *    `exit` / `exit-locked`.
 *
 * With a `record` directory it writes `<dir>/<uuid>.json`
 * ({@link CrunchRunSimRecord}) at start, and appends each signal it gets to
 * `<dir>/<uuid>.signals`. The record holds the environment it got, the
 * token included, for tests that check what a runner passed: point it at a
 * private temporary directory only.
 */
export interface CrunchRunSimOptions {
  /** The arguments; default `process.argv.slice(2)`. The last one is the container uuid. */
  argv?: readonly string[];
  /** The environment; default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /**
   * Other names for the environment settings, in the process environment and
   * in the container's, e.g. `{ STUB_MODE: 'mode' }` for older tests.
   */
  aliases?: Readonly<Record<string, Setting>>;
}

/** What the simulator writes to `<record>/<uuid>.json` at start. */
export interface CrunchRunSimRecord {
  /** The script and its arguments (`process.argv.slice(1)`). */
  argv: string[];
  /** The Node binary that runs it (`process.argv[0]`). */
  node: string;
  /** The whole environment it got. */
  env: Record<string, string>;
  /** Its variable names, sorted. */
  envKeys: string[];
  /** Its process id. */
  pid: number;
}

const UUID = /^[0-9a-z]{5}-dz642-[0-9a-z]{15}$/;
const OUTPUT = 'd41d8cd98f00b204e9800998ecf8427e+0';
const MODES = new Set<string>(CRUNCH_RUN_SIM_MODES);
const SIGNAL_NUMBERS: Record<string, number> = { SIGINT: 2, SIGQUIT: 3, SIGTERM: 15 };

/**
 * Runs the simulator in this process: it installs SIGINT/SIGTERM/SIGQUIT handlers
 * and ends the process itself when done (the exit status is the simulated
 * crunch-run's). Resolves only in modes that do not exit on their own.
 */
export async function simulateCrunchRun(opts: CrunchRunSimOptions = {}): Promise<void> {
  const argv = opts.argv ?? process.argv.slice(2);
  const env = opts.env ?? process.env;
  const uuid = argv.at(-1) ?? '';
  const redactor = new Redactor([env.ARVADOS_API_TOKEN]);
  const out = (line: string): boolean => process.stdout.write(`${redactor.redact(line)}\n`);
  const err = (line: string): boolean => process.stderr.write(`${redactor.redact(line)}\n`);
  const die = (msg: string, code = 1): never => {
    err(`fake crunch-run: ${uuid}: ${msg}`);
    process.exit(code);
  };

  const fromArgs = (name: Setting): string | undefined => {
    const a = [...argv].reverse().find((x) => x.startsWith(`--${name}=`));
    return a?.slice(name.length + 3);
  };
  const fromEnv = (vars: Record<string, unknown> | undefined, name: Setting): string | undefined => {
    if (!vars) return undefined;
    const own = vars[ENV_NAMES[name]];
    if (typeof own === 'string') return own;
    for (const [alias, target] of Object.entries(opts.aliases ?? {})) {
      if (target === name && typeof vars[alias] === 'string') return vars[alias];
    }
    return undefined;
  };
  const early = (name: Setting): string | undefined => fromArgs(name) ?? fromEnv(env, name);

  if (!UUID.test(uuid)) die(`not a container UUID: ${JSON.stringify(uuid)}`, 2);
  const host = env.ARVADOS_API_HOST ?? '';
  const token = env.ARVADOS_API_TOKEN ?? '';
  if (!host || !token) die('ARVADOS_API_HOST and ARVADOS_API_TOKEN must be set', 2);
  const insecure = /^(1|yes|true)$/i.test(env.ARVADOS_API_HOST_INSECURE ?? '');

  const record = early('record');
  if (record) {
    const rec: CrunchRunSimRecord = {
      argv: process.argv.slice(1),
      node: process.argv[0],
      env: Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => typeof e[1] === 'string')),
      envKeys: Object.keys(env).sort(),
      pid: process.pid,
    };
    writeFileSync(join(record, `${uuid}.json`), JSON.stringify(rec));
  }

  const api = async (method: 'GET' | 'PUT', attrs?: Record<string, unknown>): Promise<Record<string, unknown>> => {
    let res: RawResponse;
    try {
      res = await rawRequest({
        base: baseUrl(host),
        path: `/arvados/v1/containers/${uuid}`,
        method,
        token,
        insecure,
        timeout: 30_000,
        ...(attrs ? { body: { container: attrs } } : {}),
      });
    } catch (e) {
      throw new Error(`${method} ${uuid}: ${describeError(e)}`);
    }
    if (res.status >= 300 || !res.json) {
      // Only the API's own error messages: a proxy page may echo our request headers.
      const errors = Array.isArray(res.json?.errors) ? `: ${res.json.errors.map(String).join('; ')}` : '';
      throw new Error(`${method} ${uuid}: HTTP ${res.status}${errors}`);
    }
    return res.json;
  };
  const update = (attrs: Record<string, unknown>): Promise<Record<string, unknown>> => api('PUT', attrs);

  let mode = early('mode');
  let finishing = false;
  let wake: () => void = () => {};

  const onSignal = (sig: NodeJS.Signals): void => {
    if (record) appendFileSync(join(record, `${uuid}.signals`), `${sig}\n`);
    if (mode === 'stubborn') return;
    if (mode === 'mute') process.exit(128 + (SIGNAL_NUMBERS[sig] ?? 0));
    if (finishing) return;
    finishing = true;
    wake();
    update({ state: 'Cancelled' }).then(
      () => process.exit(0),
      (e: unknown) => die(`could not cancel: ${describeError(e)}`),
    );
  };
  // For the rest of the process: crunch-run stops on the same signals as the dispatcher.
  onStopSignals(onSignal);

  let container: Record<string, unknown> | undefined;
  if (mode === undefined) {
    container = await api('GET').catch((e: unknown) => die(describeError(e)));
    const vars = container.environment as Record<string, unknown> | undefined;
    mode = fromEnv(vars, 'mode');
  }
  if (mode === 'wait-release') mode = 'release';
  mode ??= 'complete';
  if (!MODES.has(mode)) die(`unknown mode ${JSON.stringify(mode)} (one of ${CRUNCH_RUN_SIM_MODES.join(', ')})`, 2);
  const cvars = container?.environment as Record<string, unknown> | undefined;
  const setting = (name: Setting): string | undefined => early(name) ?? fromEnv(cvars, name);
  const code = Number(setting('code') ?? (mode === 'fail' ? 1 : 3));
  if (!Number.isInteger(code) || code < 0 || code > 255) die(`code must be a whole number 0-255, got ${JSON.stringify(setting('code'))}`, 2);
  const command = Array.isArray(container?.command) ? (container.command as unknown[]) : [];
  const sleepCommand = command[0] === 'sleep' && Number(command[1]) >= 0 ? Number(command[1]) * 1000 : undefined;
  const work = Number(setting('work') ?? sleepCommand ?? 50);
  if (!(work >= 0)) die(`work must be a number of ms >= 0, got ${JSON.stringify(setting('work'))}`, 2);
  if ((mode === 'release' || mode === 'locked-release' || mode === 'orphan') && !record) die(`mode ${mode} needs a record directory (--record=DIR)`, 2);

  if (mode === 'exit-locked') {
    err(`fake crunch-run: exiting ${code} before starting ${uuid}`);
    process.exit(code);
  }
  if (container && container.state !== 'Locked' && container.state !== 'Running') die(`container is ${String(container.state)}, not Locked`);
  if (mode === 'locked-release') {
    while (!finishing && !existsSync(join(record!, `${uuid}.release`))) await sleep(20);
    mode = 'release';
  }
  if (container?.state !== 'Running') await update({ state: 'Running' }).catch((e: unknown) => finishing || die(describeError(e)));
  if (finishing) return;
  const slurmJob = env.SLURM_JOB_ID ? ` (Slurm job ${env.SLURM_JOB_ID})` : '';
  out(`fake crunch-run: ${uuid} is Running${slurmJob}`);

  // Resolves at the end of the work, or early when a signal starts the cancel.
  const pause = (ms: number): Promise<void> =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });

  switch (mode) {
    case 'exit':
      err(`fake crunch-run: exiting ${code} without finalizing ${uuid}`);
      process.exit(code);
    // eslint-disable-next-line no-fallthrough -- process.exit does not return
    case 'hang':
    case 'stubborn':
    case 'mute':
      // Until a signal (or SIGKILL): the handlers end the process.
      setInterval(() => {}, 1 << 30);
      return;
    case 'oom': {
      const hog: Buffer[] = [];
      setInterval(() => hog.push(Buffer.alloc(16 * 1024 * 1024, 1)), 50);
      return;
    }
    case 'release':
      while (!finishing && !existsSync(join(record!, `${uuid}.release`))) await sleep(20);
      break;
    case 'orphan': {
      const g = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'inherit', detached: true });
      writeFileSync(join(record!, `${uuid}.grandchild`), String(g.pid));
      g.unref();
      await pause(work);
      break;
    }
    case 'leak-token':
      await leak(token);
      await pause(work);
      break;
    default:
      await pause(work);
  }
  if (finishing) return;
  finishing = true;
  const exitCode = mode === 'fail' ? code : 0;
  await update({ state: 'Complete', exit_code: exitCode, output: OUTPUT, log: OUTPUT }).catch((e: unknown) => die(describeError(e)));
  out(`fake crunch-run: ${uuid} is Complete${exitCode === 0 ? '' : ` (exit code ${exitCode})`}`);
  process.exit(0);
}

/** Writes the token in every shape a dispatcher must mask, unredacted on purpose. */
async function leak(token: string): Promise<void> {
  const secret = /^v2\/[^/]+\/([^/]+)/.exec(token)?.[1] ?? token;
  const write = (stream: NodeJS.WriteStream, text: string): Promise<void> =>
    new Promise((resolve) => {
      if (stream.write(text)) resolve();
      else stream.once('drain', () => resolve());
    });
  await write(process.stdout, `leaking the token: ${token}\n`);
  await write(process.stderr, `Authorization: Bearer ${token}\n`);
  await write(process.stdout, `{"headers":{"Authorization":"OAuth2 ${token}"}}\n`);
  await write(process.stdout, `v2 form: v2/zzzzz-gj3su-000000000000000/${secret}\n`);
  // A line longer than 16 KiB with the token across the 16 KiB mark.
  const pad = 16 * 1024 - Math.floor(token.length / 2);
  await write(process.stderr, `${'x'.repeat(pad)}${token} end of long line\n`);
  // The token split across two writes, so that a reader sees it in two chunks.
  const half = Math.floor(token.length / 2);
  await write(process.stdout, `split: ${token.slice(0, half)}`);
  await sleep(20);
  await write(process.stdout, `${token.slice(half)}\n`);
}

const here = fileURLToPath(import.meta.url);

/**
 * Absolute path of the simulator script, for `crunchRunCommand:
 * process.execPath, crunchRunArgs: [crunchRunSimPath, '--mode=...']`. From
 * this repository's sources (under Jest) it is the built copy in `dist/`.
 */
export const crunchRunSimPath: string = here.endsWith('.ts')
  ? here.replace(/([\\/])src([\\/]testing[\\/])crunch-run-sim\.ts$/, '$1dist$2crunch-run-sim.js')
  : here;

function isMain(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(here);
  } catch {
    return false;
  }
}

if (isMain()) void simulateCrunchRun();
