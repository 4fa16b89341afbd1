/**
 * The flag spellings of the Go dispatchers (crunch-dispatch-local,
 * crunch-dispatch-slurm, arvados-server dispatch-lsf), so that an existing
 * systemd unit keeps working when its binary is replaced by this one. Go's
 * `flag` package takes one dash (`-poll-interval=1`, `-config /x`); ours are
 * the double-dash spellings, which `--help` shows.
 *
 * @module
 */
import type { OptionTable } from './args.js';

/** What one Go flag becomes. */
interface GoFlag {
  /** Our flag; undefined: accepted and ignored (it has no meaning here). */
  to?: string;
  /** Boolean Go flag: takes no separate value. */
  boolean?: boolean;
  /** Turns Go's value into ours. */
  value?: (v: string) => string;
  /** Why it is ignored, for the note. */
  ignored?: string;
}

/** Go's `-poll-interval` is a whole number of seconds; ours is a duration. */
function seconds(v: string): string {
  return /^\d+$/.test(v.trim()) ? `${v.trim()}s` : v;
}

const GO_FLAGS: Record<string, GoFlag> = {
  config: { to: 'config' },
  'poll-interval': { to: 'poll-interval', value: seconds },
  'crunch-run-command': { to: 'crunch-run-command' },
  pprof: { ignored: 'there is no Go profiler here' },
  'skip-legacy': { boolean: true, ignored: 'legacy config files are never read' },
  'legacy-crunch-dispatch-slurm-config': { ignored: 'legacy config files are not read; use --config' },
};

/** The rewritten arguments and notes about ignored flags. */
export interface GoSpellings {
  args: string[];
  notes: string[];
}

/**
 * Rewrites the Go spellings in `argv` into ours (`-poll-interval=1` ->
 * `--poll-interval=1s`), for flags that `table` has. Anything else is left
 * for the strict parser to judge. Values of our own flags are never
 * rewritten (`--crunch-run-arg=-config` stays as it is).
 */
export function goSpellings(argv: readonly string[], table: OptionTable): GoSpellings {
  const args: string[] = [];
  const notes: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      args.push(...argv.slice(i));
      break;
    }
    // The value of one of our flags given as the next argument.
    const ours = /^--([a-z0-9-]+)$/.exec(a);
    if (ours && table[ours[1]]?.type === 'string') {
      args.push(a);
      if (i + 1 < argv.length) args.push(argv[++i]);
      continue;
    }
    const m = /^-([a-z][a-z0-9-]+)(?:=(.*))?$/s.exec(a);
    const go = m ? GO_FLAGS[m[1]] : undefined;
    if (!m || !go || (go.to !== undefined && !Object.hasOwn(table, go.to))) {
      args.push(a);
      continue;
    }
    let value = m[2];
    if (value === undefined && !go.boolean && i + 1 < argv.length) value = argv[++i];
    if (go.to === undefined) {
      notes.push(`ignoring the Go dispatcher's -${m[1]}: ${go.ignored ?? 'no equivalent'}`);
      continue;
    }
    if (value === undefined) {
      args.push(`--${go.to}`);
      continue;
    }
    args.push(`--${go.to}=${go.value ? go.value(value) : value}`);
  }
  return { args, notes };
}

/** One line for `--help` footers: which Go spellings are accepted. */
export const GO_FLAGS_NOTE =
  "The Go dispatchers' -config, -poll-interval=SECONDS and -crunch-run-command\n" + 'are accepted too; -pprof and -skip-legacy are ignored.';
