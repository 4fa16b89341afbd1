/**
 * Control characters in text-mode output: an API error message or a line
 * of crunch-run output is text someone else wrote, and raw escape sequences
 * in it could rewrite the operator's terminal (move the cursor, hide lines,
 * set the window title). They are shown escaped instead (`\x1b`, `\r`).
 * Newlines and tabs are left to the caller; JSON output needs none of this.
 *
 * @module
 */

// C0 controls but tab and newline, DEL, C1 controls, and the Unicode line
// separators and bidirectional overrides that reorder what a terminal shows.
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** `text` with every control character written as an escape (`\x1b`, `\r`, `\u202e`). */
export function escapeControls(text: string): string {
  return text.replace(CONTROLS, (ch) => {
    if (ch === '\r') return '\\r';
    const code = ch.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}
