/**
 * What the commands print: one line per event, for a person
 * (`12:00:01 zzzzz-dz642-… started crunch-run, pid 1234`) or, with
 * `--json`, for a log collector (`{"time","level","event","uuid",…,"msg"}`).
 * Fatal errors are not printed here: `main` prints them as one
 * `arvados-dispatch: <reason>` line on stderr.
 *
 * @module
 */

import { escapeControls } from '../util/escape.js';
import { Redactor } from '../util/redact.js';

/** Longest line written; longer human lines are split (after redaction) into pieces of this size. */
export const MAX_OUTPUT_LINE = 16 * 1024;

/** Severity of an event line. */
export type Level = 'info' | 'warn';

/** Where lines go; the live view of the demo puts itself in between. */
export type LineSink = (stream: 'out' | 'err', line: string) => void;

/** Options of {@link Output}. */
export interface OutputOptions {
  /** One JSON object per line instead of text. */
  json?: boolean;
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  /** The clock, for tests. */
  now?: () => Date;
}

const pad = (n: number): string => String(n).padStart(2, '0');

/** `HH:MM:SS` in local time. */
export function clockTime(d: Date): string {
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/**
 * Formats and writes event lines. Human lines go to stdout, warnings to
 * stderr; JSON lines all go to stdout, so a collector reads one stream.
 * Every line is redacted whole (anything registered with {@link addSecret},
 * plus token and Authorization shapes) before a long human line is split
 * into {@link MAX_OUTPUT_LINE} pieces, so no piece of a secret is printed,
 * not even half of one that a split would have cut.
 */
export class Output {
  readonly json: boolean;
  readonly #stdout: NodeJS.WritableStream;
  readonly #stderr: NodeJS.WritableStream;
  readonly #now: () => Date;
  readonly #redactor = new Redactor();
  #sink: LineSink | undefined;

  constructor(opts: OutputOptions = {}) {
    this.json = opts.json ?? false;
    this.#stdout = opts.stdout ?? process.stdout;
    this.#stderr = opts.stderr ?? process.stderr;
    this.#now = opts.now ?? (() => new Date());
  }

  /** Masks `secret` (and, for a v2 token, its secret part) as `***` in everything written from now on. */
  addSecret(secret: string): void {
    this.#redactor.add(secret);
  }

  /** `text` as it would be printed: every secret masked. */
  redact(text: string): string {
    return this.#redactor.redact(text);
  }

  /** Sends lines to `sink` instead of the streams (or back, with undefined). */
  setSink(sink: LineSink | undefined): void {
    this.#sink = sink;
  }

  /**
   * One event. `msg` is the human sentence; `fields` (e.g. `uuid`, `pid`)
   * appear as JSON keys only.
   */
  event(event: string, msg: string, fields: Record<string, unknown> = {}, level: Level = 'info'): void {
    if (this.json) {
      const { uuid, ...rest } = fields;
      const rec = { time: this.#now().toISOString(), level, event, ...(uuid !== undefined ? { uuid } : {}), ...rest, msg };
      // Strings are redacted before encoding, as JSON escapes could hide a secret from a match on the encoded text.
      this.#emit('out', this.#redactor.redact(JSON.stringify(rec, (_k, v: unknown) => (typeof v === 'string' ? this.#redactor.redact(v) : v))));
    } else {
      const time = clockTime(this.#now());
      this.#write(level === 'warn' ? 'err' : 'out', `${time} ${level === 'warn' ? 'warning: ' : ''}${msg.replace(/\r?\n/g, ' ')}`);
    }
  }

  /** A warning event. */
  warn(msg: string, fields: Record<string, unknown> = {}, event = 'warning'): void {
    this.event(event, msg, fields, 'warn');
  }

  /** Text for a person (tables, banners): printed as is in human mode, dropped in JSON mode. */
  text(text: string): void {
    if (this.json) return;
    for (const line of text.replace(/\n$/, '').split('\n')) this.#write('out', line);
  }

  /** Redacts the whole line, escapes its control characters (see util/escape.ts), then writes it in pieces of at most {@link MAX_OUTPUT_LINE}. */
  #write(stream: 'out' | 'err', line: string): void {
    // Redacted before escaping, so an escape cannot split a secret.
    const text = escapeControls(this.#redactor.redact(line));
    if (text.length <= MAX_OUTPUT_LINE) return this.#emit(stream, text);
    for (let i = 0; i < text.length; i += MAX_OUTPUT_LINE) this.#emit(stream, text.slice(i, i + MAX_OUTPUT_LINE));
  }

  #emit(stream: 'out' | 'err', text: string): void {
    if (this.#sink) this.#sink(stream, text);
    else (stream === 'out' ? this.#stdout : this.#stderr).write(`${text}\n`);
  }
}
