/**
 * The fenced TypeScript and JavaScript blocks of the README and docs/*.md,
 * for the tests that compile and run them. A block is taken as it is; the
 * HTML comment on the line before it may say `<!-- fragment -->` (not a
 * program of its own: skipped) or `<!-- run -->` (also run with Node).
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** One fenced block. */
export interface Snippet {
  /** `README.md` or `docs/<name>.md`. */
  file: string;
  /** Line of the opening fence (1-based). */
  line: number;
  lang: 'ts' | 'js';
  code: string;
  mark: 'fragment' | 'run' | undefined;
}

const LANGS: Record<string, 'ts' | 'js'> = { ts: 'ts', typescript: 'ts', js: 'js', javascript: 'js', mjs: 'js' };

/** The prose files whose blocks are checked (not the generated references). */
export function docFiles(): string[] {
  const docs = readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`);
  return ['README.md', ...docs].filter((f) => existsSync(join(ROOT, f)));
}

/** Every fenced block of `file`, with its language and mark. */
export function snippetsOf(file: string): Snippet[] {
  const lines = readFileSync(join(ROOT, file), 'utf8').split('\n');
  const out: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(`{3,})\s*(\S*)/.exec(lines[i]);
    if (!open) continue;
    const fence = open[1];
    let end = i + 1;
    while (end < lines.length && !lines[end].startsWith(fence)) end++;
    const lang = LANGS[open[2].toLowerCase()];
    if (lang) {
      let prev = i - 1;
      while (prev >= 0 && lines[prev].trim() === '') prev--;
      const m = prev >= 0 ? /^<!--\s*(fragment|run)\s*-->$/.exec(lines[prev].trim()) : null;
      out.push({ file, line: i + 1, lang, code: lines.slice(i + 1, end).join('\n'), mark: m ? (m[1] as 'fragment' | 'run') : undefined });
    }
    i = end;
  }
  return out;
}

/** A file name for a snippet, unique and telling where it came from. */
export function snippetName(s: Snippet): string {
  return `${s.file.replace(/[^A-Za-z0-9]+/g, '_')}_L${s.line}`;
}
