// The CLI's pure parts: durations, sizes, option parsing, finding
// executables, and output formatting.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from '@jest/globals';
import { Options, formatHelp, parseOptions, type OptionTable } from '../../src/cli/args.js';
import { formatDuration, parseDuration } from '../../src/cli/duration.js';
import { UsageError, errorLine } from '../../src/cli/errors.js';
import { Output } from '../../src/cli/output.js';
import { statusLine } from '../../src/cli/report.js';
import { parseSize } from '../../src/cli/size.js';
import { findExecutable } from '../../src/cli/which.js';

describe('parseDuration', () => {
  it.each([
    ['10s', 10_000],
    ['500ms', 500],
    ['1m', 60_000],
    ['1h30m', 5_400_000],
    ['1.5s', 1_500],
    ['2h45m30.5s', 9_930_500],
    ['.5s', 500],
    ['0', 0],
    ['0s', 0],
    [' 20ms ', 20],
    ['1500us', 1.5],
  ])('%s = %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each([
    ['10', /missing unit \(e\.g\. 10s, 500ms/],
    ['', /empty/],
    ['fast', /invalid duration "fast"/],
    ['10x', /invalid duration "10x"/],
    ['-1s', /invalid duration "-1s"/],
    ['1s 2s', /invalid duration/],
    ['s', /invalid duration/],
  ])('rejects %j', (text, message) => {
    expect(() => parseDuration(text)).toThrow(message);
  });

  it('formats like Go', () => {
    expect([0, 250, 1_500, 10_000, 60_000, 5_400_000, 3_600_000 + 1_500].map(formatDuration)).toEqual([
      '0s', '250ms', '1.5s', '10s', '1m', '1h30m', '1h1.5s',
    ]);
  });
});

describe('parseSize', () => {
  it.each([
    ['8GiB', 8 * 2 ** 30],
    ['512MiB', 512 * 2 ** 20],
    ['1.5GiB', 1.5 * 2 ** 30],
    ['550M', 550_000_000],
    ['2g', 2_000_000_000],
    ['10KB', 10_000],
    ['1kib', 1024],
    ['1073741824', 2 ** 30],
    ['100B', 100],
    [' 4 GiB ', 4 * 2 ** 30],
  ])('%s = %d bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each(['', 'lots', '8XB', '-1G', '1.5.5G', 'GiB', '1e3'])('rejects %j', (text) => {
    expect(() => parseSize(text)).toThrow(/invalid size/);
  });
});

describe('option parsing', () => {
  const table: OptionTable = {
    'poll-interval': { type: 'string', metavar: 'DURATION', default: '10s', help: 'time between polls' },
    arg: { type: 'string', multiple: true, metavar: 'ARG', help: 'an argument' },
    n: { type: 'string', metavar: 'N', help: 'a number' },
    ram: { type: 'string', metavar: 'SIZE', help: 'memory' },
    json: { type: 'boolean', help: 'json' },
    help: { type: 'boolean', short: 'h', help: 'help' },
  };

  it('collects repeated flags in order, and both --x v and --x=v forms', () => {
    const o = new Options(parseOptions(['--arg', 'a', '--arg=-b', '--poll-interval=50ms', '--n', '3', '--json', '--ram', '2GiB'], table, 'local'), 'local');
    expect(o.list('arg')).toEqual(['a', '-b']);
    expect(o.duration('poll-interval', 10_000, 1)).toBe(50);
    expect(o.integer('n', 1)).toBe(3);
    expect(o.size('ram', undefined)).toBe(2 * 2 ** 30);
    expect(o.flag('json')).toBe(true);
    expect(o.flag('help')).toBe(false);
  });

  it('applies defaults', () => {
    const o = new Options(parseOptions([], table, 'local'), 'local');
    expect(o.duration('poll-interval', 10_000, 1)).toBe(10_000);
    expect(o.integer('n', undefined)).toBeUndefined();
    expect(o.list('arg')).toEqual([]);
  });

  it.each([
    [['--bogus'], "unknown option '--bogus'; see 'arvados-dispatch local --help'"],
    [['extra'], "unexpected argument 'extra' (local takes no positional arguments); see 'arvados-dispatch local --help'"],
    [['--poll-interval'], /^option '--poll-interval <value>' argument missing/],
    [['--json=yes'], /^option '--json' does not take an argument/],
    [['--arg', '--json'], "option '--arg' needs a value; write --arg=VALUE for a value starting with '-'"],
  ])('%j is a usage error', (argv, message) => {
    expect(() => parseOptions(argv, table, 'local')).toThrow(UsageError);
    expect(() => parseOptions(argv, table, 'local')).toThrow(message);
  });

  it('names the flag of a bad value', () => {
    const bad = (argv: string[], get: (o: Options) => unknown): string => {
      try {
        get(new Options(parseOptions(argv, table, 'local'), 'local'));
      } catch (err) {
        expect(err).toBeInstanceOf(UsageError);
        return (err as Error).message;
      }
      throw new Error('no error');
    };
    expect(bad(['--poll-interval', '10'], (o) => o.duration('poll-interval', 1, 1))).toMatch(/^--poll-interval: invalid duration "10": missing unit/);
    expect(bad(['--poll-interval', '0s'], (o) => o.duration('poll-interval', 1, 1))).toMatch(/^--poll-interval: must be at least 1 ms/);
    // Issue 18 item 9: 2^31 ms and more would be a 1 ms timer.
    expect(bad(['--poll-interval', '600h'], (o) => o.duration('poll-interval', 1, 1))).toMatch(/^--poll-interval: invalid duration "600h": too large \(at most 596h31m23\.647s\)/);
    expect(bad(['--poll-interval', '596h31m23.648s'], (o) => o.duration('poll-interval', 1))).toMatch(/too large/);
    expect(new Options(parseOptions(['--poll-interval', '596h31m23.647s'], table, 'local'), 'local').duration('poll-interval', 1, 1)).toBe(2 ** 31 - 1);
    expect(bad(['--n', '0'], (o) => o.integer('n', 1))).toMatch(/^--n: "0" is not a whole number >= 1/);
    expect(bad(['--n', '2.5'], (o) => o.integer('n', 1))).toMatch(/not a whole number/);
    expect(bad(['--ram', 'lots'], (o) => o.size('ram', undefined, 1))).toMatch(/^--ram: invalid size "lots"/);
    expect(bad(['--ram', '0'], (o) => o.size('ram', undefined, 1))).toMatch(/^--ram: must be at least 1 bytes/);
    expect(bad(['--n', ''], (o) => o.integer('n', 1))).toMatch(/^--n: must not be empty/);
  });

  it('formats help from the same table', () => {
    const text = formatHelp('arvados-dispatch local [options]', 'Does things.', table, 'Footer.');
    expect(text).toContain('Usage: arvados-dispatch local [options]\n\nDoes things.\n\nOptions:\n');
    expect(text).toMatch(/ {6}--poll-interval DURATION +time between polls \(default 10s\)/);
    expect(text).toMatch(/--arg ARG +an argument \[repeatable\]/);
    expect(text).toMatch(/-h, --help +help/);
    expect(text.endsWith('\nFooter.\n')).toBe(true);
  });
});

describe('findExecutable', () => {
  it('finds a name on PATH, checks a path, and says what is wrong', () => {
    const dir = mkdtempSync(join(tmpdir(), 'which-'));
    try {
      const exe = join(dir, 'my-crunch-run');
      writeFileSync(exe, '#!/bin/sh\n');
      chmodSync(exe, 0o755);
      const plain = join(dir, 'not-executable');
      writeFileSync(plain, '');
      expect(findExecutable('my-crunch-run', `/nonexistent:${dir}`)).toBe(exe);
      expect(findExecutable(exe, '')).toBe(exe);
      expect(() => findExecutable('not-executable', dir)).toThrow('"not-executable" was not found on PATH');
      expect(() => findExecutable(plain)).toThrow(`"${plain}" is not an executable file`);
      expect(() => findExecutable(dir)).toThrow('is not an executable file');
      expect(() => findExecutable('/nonexistent/crunch-run')).toThrow('"/nonexistent/crunch-run" does not exist');
      expect(() => findExecutable('my-crunch-run', undefined)).toThrow(/not found on PATH/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Output', () => {
  const capture = (): { stream: PassThrough; text: () => string } => {
    const stream = new PassThrough();
    let text = '';
    stream.on('data', (d: Buffer) => (text += d.toString()));
    return { stream, text: () => text };
  };
  const now = (): Date => new Date(2025, 0, 2, 3, 4, 5);

  it('writes human lines to stdout and warnings to stderr, one line each', () => {
    const out = capture();
    const err = capture();
    const o = new Output({ stdout: out.stream, stderr: err.stream, now });
    o.event('locked', 'zzzzz-dz642-000000000000001 locked (priority 5)', { uuid: 'zzzzz-dz642-000000000000001', priority: 5 });
    o.warn('something\nbroke');
    o.text('a table\nrow\n');
    expect(out.text()).toBe('03:04:05 zzzzz-dz642-000000000000001 locked (priority 5)\na table\nrow\n');
    expect(err.text()).toBe('03:04:05 warning: something broke\n');
  });

  it('writes one JSON object per line to stdout with --json, and no text', () => {
    const out = capture();
    const o = new Output({ json: true, stdout: out.stream, stderr: out.stream, now });
    o.event('started', 'u started', { uuid: 'u', pid: 7 });
    o.warn('careful', { uuid: 'u' }, 'cancelled');
    o.text('not for machines');
    const lines = out.text().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toEqual([
      { time: now().toISOString(), level: 'info', event: 'started', uuid: 'u', pid: 7, msg: 'u started' },
      { time: now().toISOString(), level: 'warn', event: 'cancelled', uuid: 'u', msg: 'careful' },
    ]);
    expect(Object.keys(lines[0])).toEqual(['time', 'level', 'event', 'uuid', 'pid', 'msg']);
  });

  it('masks secrets in every line', () => {
    const out = capture();
    const o = new Output({ stdout: out.stream, now });
    o.addSecret('s3cr3t-token');
    o.event('output', 'u | token is s3cr3t-token', { line: 'token is s3cr3t-token' });
    expect(out.text()).not.toContain('s3cr3t-token');
    expect(out.text()).toContain('token is ***');
  });

  it('formats the status line and error lines', () => {
    expect(statusLine({ queued: 3, running: 2, done: 5, complete: 4, cancelled: 1 })).toBe('queued 3, running 2, done 5 (complete 4, cancelled 1)');
    expect(errorLine('two\nlines ')).toBe('arvados-dispatch: two lines\n');
  });
});
