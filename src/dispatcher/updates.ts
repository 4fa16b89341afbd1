/**
 * The `updates` stream a runner receives: newer records of its container,
 * latest-wins. Pushing never waits for the reader, so a runner that reads
 * slowly (or never) cannot hold up the poll loop; it only misses records that
 * were already superseded. (The Go library's first version sent updates on
 * an unbuffered channel while holding its lock, and deadlocked when a runner
 * stopped reading.)
 *
 * @module
 */
import type { Container } from '../types.js';

/** Why an updates stream ended. */
export type StreamEndReason =
  | 'finished' // the container is Complete or Cancelled
  | 'requeued' // the container is Queued again
  | 'locked-by-other' // another token holds the lock now
  | 'vanished' // no query returns the container any more
  | 'runner-settled' // the runner returned
  | 'stopped'; // the dispatcher is stopping

/**
 * What a runner gets as `updates`: an `AsyncIterable<Container>` plus a way
 * to notice the end without iterating.
 */
export interface ContainerUpdates extends AsyncIterable<Container> {
  /** Aborted when the stream ends, with the {@link StreamEndReason} as `reason`. */
  readonly signal: AbortSignal;
  /** Why the stream ended, once it has. */
  readonly endReason: StreamEndReason | undefined;
}

/** A single-slot mailbox that can be iterated once, by one reader. */
export class UpdateStream implements ContainerUpdates {
  #pending: Container | undefined;
  #waiters: Array<(r: IteratorResult<Container>) => void> = [];
  #end: StreamEndReason | undefined;
  // Made on first use: an AbortSignal costs more memory than the rest of the
  // stream, and many runners never look at it.
  #ac: AbortController | undefined;

  get signal(): AbortSignal {
    if (!this.#ac) {
      this.#ac = new AbortController();
      if (this.#end) this.#ac.abort(this.#end);
    }
    return this.#ac.signal;
  }

  get endReason(): StreamEndReason | undefined {
    return this.#end;
  }

  get ended(): boolean {
    return this.#end !== undefined;
  }

  /** Offers a newer record; replaces one the reader has not taken yet. */
  push(c: Container): void {
    if (this.#end) return;
    const waiter = this.#waiters.shift();
    if (waiter) waiter({ value: c, done: false });
    else this.#pending = c;
  }

  /** Ends the stream; a pending record is dropped, since it is no longer current. */
  end(reason: StreamEndReason): void {
    if (this.#end) return;
    this.#end = reason;
    this.#pending = undefined;
    for (const w of this.#waiters.splice(0)) w({ value: undefined, done: true });
    this.#ac?.abort(reason);
  }

  [Symbol.asyncIterator](): AsyncIterator<Container> {
    return {
      next: () => {
        if (this.#pending) {
          const value = this.#pending;
          this.#pending = undefined;
          return Promise.resolve({ value, done: false });
        }
        if (this.#end) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => this.#waiters.push(resolve));
      },
      // A reader that breaks out of `for await` only stops listening; the
      // dispatcher keeps tracking the container until the runner settles.
      return: () => Promise.resolve({ value: undefined, done: true }),
    };
  }
}
