// The CLI in-process: run(argv, io) with the test's own streams and
// environment, for what needs no API and no scheduler (help, version, bad
// command lines). The spawned smoke tests keep checking the real process.
import { describe, expect, it } from '@jest/globals';
import { run } from '../../src/cli/run.js';
import { captureIO as io } from '../helpers/in-process.js';

describe('arvados-dispatch in-process', () => {
  it('--help lists every command, the batch systems from the registry included', async () => {
    const t = io();
    expect(await run(['--help'], t)).toBe(0);
    const section = t.out().split('Commands:\n')[1].split('\n\n')[0];
    expect(section.split('\n').map((l) => l.trim().split(/\s+/)[0])).toEqual(['local', 'slurm', 'lsf', 'sge', 'pbs', 'demo', 'fake-server']);
    expect(t.err()).toBe('');
  });

  it('no arguments: the help on stderr, exit 2; an unknown command or option: one line, exit 2', async () => {
    const none = io();
    expect(await run([], none)).toBe(2);
    expect(none.err()).toMatch(/^Usage: arvados-dispatch <command>/);
    const bad = io();
    expect(await run(['qsub'], bad)).toBe(2);
    expect(bad.err()).toBe("arvados-dispatch: unknown command 'qsub'; see 'arvados-dispatch --help'\n");
    const opt = io();
    expect(await run(['--frobnicate'], opt)).toBe(2);
    expect(opt.err()).toBe("arvados-dispatch: unknown option '--frobnicate'; see 'arvados-dispatch --help'\n");
  });

  it('--version and -version print the version', async () => {
    for (const flag of ['--version', '-version']) {
      const t = io();
      expect(await run([flag], t)).toBe(0);
      expect(t.out()).toMatch(/^arvados-dispatch \d+\.\d+\.\d+/);
    }
  });

  it.each(['slurm', 'lsf', 'sge', 'pbs'])('%s --help (and help %s) documents the common and its own flags', async (command) => {
    const t = io();
    expect(await run([command, '--help'], t)).toBe(0);
    expect(t.out()).toMatch(new RegExp(`^Usage: arvados-dispatch ${command} \\[options\\]`));
    for (const flag of ['--poll-interval', '--crunch-run-command', '--submit-rate', '--pending-grace', '--job-secrets-dir', '--priority-spread']) expect(t.out()).toContain(flag);
    const h = io();
    expect(await run(['help', command], h)).toBe(0);
    expect(h.out()).toBe(t.out());
  });

  it('pbs --help names its qsub/qstat flags and its own', async () => {
    const t = io();
    expect(await run(['pbs', '--help'], t)).toBe(0);
    for (const flag of ['--qstat-interval', '--qsub-arg', '--qsub-gpu-arg', '--qsub-env', '--no-reprioritise']) expect(t.out()).toContain(flag);
    expect(t.out()).toContain('select=1:ncpus=%C:mem=%Mmb');
  });

  it('a bad flag value is one line naming it, exit 2', async () => {
    const t = io();
    expect(await run(['pbs', '--frobnicate'], t)).toBe(2);
    expect(t.err()).toMatch(/^arvados-dispatch: .*frobnicate/);
    expect(t.err().trim().split('\n')).toHaveLength(1);
  });
});
