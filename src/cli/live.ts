/**
 * A block of lines redrawn in place at the bottom of a terminal, for the
 * demo's progress display. Only for TTYs; callers print plain lines otherwise.
 *
 * @module
 */

const ESC = '\x1b[';

/**
 * The size to draw in. A terminal that reports 0 columns or rows (some
 * emulators and `script` sessions do) or none at all counts as 80x24:
 * drawing into 0 would cut every line to nothing.
 */
export function terminalSize(stream: { columns?: number; rows?: number }): { columns: number; rows: number } {
  return { columns: Math.max(20, stream.columns || 80), rows: Math.max(5, stream.rows || 24) };
}

/** Redraws `render()` in place every `interval` ms until {@link stop}. */
export class LiveBlock {
  readonly #stream: NodeJS.WriteStream;
  readonly #render: () => string[];
  #drawn = 0;
  #timer: NodeJS.Timeout | undefined;
  #active = false;
  readonly #restore = (): void => {
    if (this.#active) this.#stream.write(`${ESC}?25h`);
  };

  constructor(stream: NodeJS.WriteStream, render: () => string[]) {
    this.#stream = stream;
    this.#render = render;
  }

  /** Hides the cursor and starts redrawing. */
  start(interval: number): void {
    this.#active = true;
    this.#stream.write(`${ESC}?25l`);
    // Whatever ends the process, give the cursor back.
    process.once('exit', this.#restore);
    this.draw();
    this.#timer = setInterval(() => this.draw(), interval);
  }

  /** Draws now. */
  draw(): void {
    const { columns: cols, rows } = terminalSize(this.#stream);
    // Lines must not wrap, or the count of lines to move up would be wrong.
    const lines = this.#render()
      .slice(0, rows - 1)
      .map((l) => (l.length >= cols ? `${l.slice(0, cols - 2)}…` : l));
    const up = this.#drawn > 0 ? `${ESC}${this.#drawn}F` : '';
    this.#stream.write(`${up}${ESC}J${lines.join('\n')}\n`);
    this.#drawn = lines.length;
  }

  /** Draws a last time, leaves the block on screen and shows the cursor. */
  stop(): void {
    if (!this.#active) return;
    clearInterval(this.#timer);
    this.draw();
    this.#restore();
    this.#active = false;
    process.off('exit', this.#restore);
  }
}
