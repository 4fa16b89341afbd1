/**
 * A custom runner: each container is handed to a command of your choice
 * (`<command> [args...] <container-uuid>`, as crunch-run is started), at most
 * `maxContainers` at a time. It shows the whole `Runner` contract in one
 * place: start, follow, stop on cancel, report capacity, close.
 *
 * Use it with:
 *
 * ```ts
 * import { Dispatcher } from 'arvados-dispatch';
 * import { CommandRunner } from './command-runner.js';
 *
 * const runner = new CommandRunner({ command: '/usr/bin/crunch-run', maxContainers: 4 });
 * await new Dispatcher({ runner }).run(); // until SIGINT / SIGTERM
 * ```
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { RunnerConfigError, type Container, type ContainerUpdates, type Dispatcher, type Runner } from 'arvados-dispatch';

export interface CommandRunnerOptions {
  /** The program to run per container; it gets the container UUID as its last argument. */
  command: string;
  /** Arguments before the UUID. */
  args?: readonly string[];
  /** Containers running at once; the dispatcher locks no more than that. */
  maxContainers: number;
  /** ms between SIGINT (cancel) and SIGKILL. */
  killAfter?: number;
}

export class CommandRunner implements Runner {
  readonly #opts: Required<CommandRunnerOptions>;
  readonly #children = new Map<string, ChildProcess>();
  #closed?: Promise<void>;

  constructor(opts: CommandRunnerOptions) {
    this.#opts = { args: [], killAfter: 10_000, ...opts };
  }

  // The dispatcher asks before locking, so a full runner never holds a lock it cannot use.
  capacity(): number {
    return Math.max(0, this.#opts.maxContainers - this.#children.size);
  }

  // Shown by the management API (`arvados-dispatch ... --listen`).
  schedulingStatus(uuid: string): string | undefined {
    const child = this.#children.get(uuid);
    return child ? `running as pid ${child.pid}` : undefined;
  }

  // An arrow function, so that `runner.runContainer` can be passed around on its own.
  runContainer = async (dispatcher: Dispatcher, container: Readonly<Container>, updates: ContainerUpdates): Promise<void> => {
    if (container.state !== 'Locked') {
      // Running already: left by an earlier run of this dispatcher. This
      // runner cannot find that process again, so it gives up on it and the
      // dispatcher cancels the container (a Running container cannot go back
      // to the queue).
      return;
    }
    // Credentials go in the environment, never on the command line.
    const child = spawn(this.#opts.command, [...this.#opts.args, container.uuid], {
      env: { PATH: process.env.PATH ?? '', ...dispatcher.client.credentialsEnv() },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    let startError: Error | undefined;
    // A command that cannot start emits 'error' (and maybe no 'exit').
    const exited = once(child, 'exit').catch((err: Error) => void (startError = err));
    this.#children.set(container.uuid, child);
    try {
      // `updates` yields newer records while the container is Locked or
      // Running, and ends when it is finished, requeued, taken by another
      // dispatcher or the dispatcher stops (`updates.endReason` says which).
      const stopOnCancel = (async () => {
        for await (const c of updates) if (c.priority === 0) return this.#stop(child);
        if (updates.endReason !== 'finished') await this.#stop(child);
      })();
      stopOnCancel.catch(() => {}); // only raced below; a late failure has nothing left to stop
      await Promise.race([exited, stopOnCancel]);
      await exited;
    } finally {
      this.#children.delete(container.uuid);
    }
    // Not the container's fault: the dispatcher unlocks it and pauses locking
    // instead of cycling every container through this host.
    if (startError) throw new RunnerConfigError(`cannot run ${this.#opts.command}: ${startError.message}`, 'environment');
    // Returning is enough: if the command left the container Locked or
    // Running, the dispatcher unlocks or cancels it.
  };

  /** Interrupts every command and waits for them. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= Promise.all([...this.#children.values()].map((c) => this.#stop(c))).then(() => undefined);
    return this.#closed;
  }

  async #stop(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGINT'); // crunch-run cancels the container on SIGINT
    const timer = setTimeout(() => child.kill('SIGKILL'), this.#opts.killAfter);
    await exited;
    clearTimeout(timer);
  }
}
