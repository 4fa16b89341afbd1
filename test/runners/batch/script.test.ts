import { execFileSync } from 'node:child_process';
import { describe, expect, it } from '@jest/globals';
import { batchScript, shellQuote } from '../../../src/runners/batch/script.js';

describe('shellQuote', () => {
  it('wraps in single quotes and escapes single quotes', () => {
    expect(shellQuote('abc')).toBe("'abc'");
    expect(shellQuote('')).toBe("''");
    expect(shellQuote("b'ar")).toBe("'b'\\''ar'");
    expect(shellQuote("''")).toBe("''\\'''\\'''");
  });
});

describe('batchScript (ScriptSuite)', () => {
  it('matches the Go execScript output', () => {
    expect(batchScript(['sh', '-c', 'echo $foo'], { foo: "b'ar" })).toBe(
      "#!/bin/sh\nfoo='b'\\''ar' exec 'sh' '-c' 'echo $foo'\n",
    );
  });

  it('works without environment variables', () => {
    expect(batchScript(['crunch-run', 'zzzzz-dz642-queuedcontainer'])).toBe(
      "#!/bin/sh\nexec 'crunch-run' 'zzzzz-dz642-queuedcontainer'\n",
    );
  });

  it('keeps the order of the environment entries', () => {
    expect(batchScript(['true'], { B: '2', A: '1' })).toBe("#!/bin/sh\nB='2' A='1' exec 'true'\n");
  });

  it('rejects invalid variable names and an empty command', () => {
    expect(() => batchScript(['true'], { 'x; rm -rf /': 'v' })).toThrow(/invalid environment variable name/);
    expect(() => batchScript(['true'], { '1A': 'v' })).toThrow(TypeError);
    expect(() => batchScript(['true'], { '': 'v' })).toThrow(TypeError);
    expect(() => batchScript([])).toThrow(/empty command/);
  });

  it('passes hostile strings through /bin/sh unchanged', () => {
    const nasty = `it's "$HOME" \`id\` $(id) \\ \n; | & * ? ~ %`;
    const script = batchScript(['printf', '%s|%s', nasty, 'x'], { V: nasty });
    expect(execFileSync('/bin/sh', ['-s'], { input: script, encoding: 'utf8' })).toBe(`${nasty}|x`);
    const env = batchScript(['sh', '-c', 'printf %s "$V"'], { V: nasty });
    expect(execFileSync('/bin/sh', ['-s'], { input: env, encoding: 'utf8' })).toBe(nasty);
  });
});
