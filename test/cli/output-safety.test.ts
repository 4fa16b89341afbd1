// What the CLI prints is safe to show (issue 18 items 12, 13 and the
// "any piece of a secret" rule): control characters escaped in text mode,
// URL userinfo masked in every message, pieces of secrets masked.
import { PassThrough } from 'node:stream';
import { describe, expect, it } from '@jest/globals';
import { errorLine } from '../../src/cli/errors.js';
import { Output } from '../../src/cli/output.js';
import { escapeControls } from '../../src/util/escape.js';
import { MASK, Redactor, redactShapes } from '../../src/util/redact.js';

const SECRET = '4h9kq2m7x0c3v8b1n6z5l4j2g7f9d0s3a8p1o6i5u4y3t2r1';
const TOKEN = `v2/zzzzz-gj3su-0123456789abcde/${SECRET}`;

function capture(json: boolean): { out: Output; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (b: Buffer) => (text += b.toString()));
  const out = new Output({ json, stdout: stream, stderr: stream, now: () => new Date(0) });
  return { out, text: () => text };
}

describe('terminal escapes (item 12)', () => {
  it('are escaped in text mode, event lines and text alike', () => {
    const { out, text } = capture(false);
    out.event('output', 'crunch-run says \x1b]0;pwned\x07\x1b[2J\rhi\u202e', {});
    out.warn('API error: \x1b[31mred\x9b');
    out.text('table \x1b[1mrow');
    // eslint-disable-next-line no-control-regex
    expect(text()).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]/);
    expect(text()).toContain('crunch-run says \\x1b]0;pwned\\x07\\x1b[2J\\rhi\\u202e');
    expect(text()).toContain('API error: \\x1b[31mred\\x9b');
    expect(text()).toContain('table \\x1b[1mrow');
  });

  it('--json stays JSON: the value round-trips', () => {
    const { out, text } = capture(true);
    out.event('output', 'x\x1b[2Jy', {});
    expect(JSON.parse(text()).msg).toBe('x\x1b[2Jy');
  });

  it('are escaped in the one-line fatal error', () => {
    expect(errorLine('bad answer: \x1b[2J')).toBe('arvados-dispatch: bad answer: \\x1b[2J\n');
    expect(escapeControls('tab\tstays')).toBe('tab\tstays');
  });
});

describe('URL userinfo (item 13)', () => {
  it('is masked in every message: shapes, redactors, fatal errors', () => {
    const msg = '/etc/arvados/config.yml: Clusters.zzzzz.Services.Controller.ExternalURL: "https://admin:hunter2@api.example x" is not a URL';
    expect(errorLine(msg)).toBe(`arvados-dispatch: /etc/arvados/config.yml: Clusters.zzzzz.Services.Controller.ExternalURL: "https://${MASK}@api.example x" is not a URL\n`);
    expect(redactShapes('ws://tok3n@h:1/ and http://h/a@b')).toBe(`ws://${MASK}@h:1/ and http://h/a@b`);
    expect(new Redactor().redact('https://u:p@h')).toBe(`https://${MASK}@h`);
  });
});

describe('pieces of a secret', () => {
  it('masks any piece of 8 or more characters of a secret, wherever it stands; not the token UUID', () => {
    const r = new Redactor([TOKEN]);
    expect(r.redact(`prefix ${SECRET.slice(0, 40)} suffix`)).toBe(`prefix ${MASK} suffix`);
    expect(r.redact(`a${SECRET.slice(17, 25)}b`)).toBe(`a${MASK}b`);
    expect(r.redact(`a${SECRET.slice(17, 24)}b`)).toBe(`a${SECRET.slice(17, 24)}b`);
    expect(r.redact(`${SECRET.slice(0, 9)} and ${SECRET.slice(30, 45)}.`)).toBe(`${MASK} and ${MASK}.`);
    expect(r.redact('dispatching as token zzzzz-gj3su-0123456789abcde')).toBe('dispatching as token zzzzz-gj3su-0123456789abcde');
  });

  it('Output masks a 40-character prefix a child printed', () => {
    const { out, text } = capture(false);
    out.addSecret(TOKEN);
    out.event('output', `leak: ${SECRET.slice(0, 40)}`);
    expect(text()).not.toContain(SECRET.slice(0, 8));
    expect(text()).toContain(`leak: ${MASK}`);
  });
});
