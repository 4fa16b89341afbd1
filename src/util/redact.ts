/**
 * Secret redaction: the one function every output path uses (client errors,
 * `logs` records, CLI lines, JSON output, debug output). Text is always
 * redacted whole, before it is cut to any length, so no piece of a secret can
 * survive a cut that falls inside it.
 *
 * @module
 */

/** What a masked secret is replaced with. */
export const MASK = '***';

// An Arvados v2 token: v2/<27-char uuid>/<secret>. The secret part alone is
// as good as the whole token to the API, so it is masked wherever it stands.
const V2_TOKEN = /v2\/[a-z0-9]{5}-[a-z0-9]{5}-[a-z0-9]{15}\/([A-Za-z0-9]+)/g;
// Authorization header values, however a proxy or a debug dump prints them
// ("Authorization: Bearer x", "authorization":"OAuth2 x", Authorization=x).
const AUTH_HEADER = /(authorization["']?\s*[:=]\s*["']?)(?:(?:bearer|oauth2|basic)\s+)?[^\s"',;}]+/gi;
// A bare "Bearer <token>" or "OAuth2 <token>" outside a header line.
const AUTH_SCHEME = /\b(bearer|oauth2)\s+[A-Za-z0-9/._~+-]{8,}/gi;
// The userinfo of a URL (`https://user:password@host`): a password written
// into a config URL must never be quoted back in a message.
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@"'<>]+@/gi;

/**
 * Shortest piece of a secret that is masked on its own: a child that prints
 * the first 40 characters of a token must not show them. Shorter pieces are
 * too likely to be ordinary text.
 */
export const MIN_SECRET_PIECE = 8;

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Masks secrets in text. Knows the shapes of Arvados tokens,
 * Authorization headers and URL userinfo; more secrets (a token that is not
 * v2-shaped, a management token) can be added. Of a secret of at least
 * {@link MIN_SECRET_PIECE} characters, every piece of that length or more
 * is masked too, wherever it stands (of a v2 token, pieces of its secret
 * part: its UUID is not secret).
 *
 * @example
 * ```ts
 * const r = new Redactor([process.env.ARVADOS_API_TOKEN ?? '']);
 * console.log(r.redact(text));
 * ```
 */
export class Redactor {
  readonly #secrets = new Set<string>();
  #pattern: RegExp | undefined;
  /** Every {@link MIN_SECRET_PIECE}-character piece of the secrets that are long enough. */
  readonly #pieces = new Set<string>();

  constructor(secrets: Iterable<string | undefined> = []) {
    for (const s of secrets) this.add(s);
  }

  /**
   * Adds a secret to mask from now on. Strings shorter than 4 characters are
   * ignored (masking them would mangle ordinary text and protect nothing).
   * For a v2 token, its secret part is masked on its own too.
   */
  add(secret: string | undefined): this {
    if (!secret || secret.length < 4) return this;
    const parts = [secret];
    const m = /^v2\/[^/]+\/(.+)$/.exec(secret);
    if (m?.[1] && m[1].length >= 4) parts.push(m[1]);
    const whole = m?.[1] ?? secret;
    for (let i = 0; i + MIN_SECRET_PIECE <= whole.length; i++) this.#pieces.add(whole.slice(i, i + MIN_SECRET_PIECE));
    for (const p of parts) {
      if (!this.#secrets.has(p)) {
        this.#secrets.add(p);
        this.#pattern = undefined;
      }
    }
    return this;
  }

  /** True if nothing but the built-in shapes is masked. */
  get empty(): boolean {
    return this.#secrets.size === 0;
  }

  /** Returns `text` with every known secret and secret-shaped value masked. */
  redact(text: string): string {
    let out = text;
    if (this.#secrets.size > 0) {
      // Longest first, so a whole token is masked before its secret part.
      this.#pattern ??= new RegExp([...this.#secrets].sort((a, b) => b.length - a.length).map(escape).join('|'), 'g');
      out = out.replace(this.#pattern, MASK);
    }
    if (this.#pieces.size > 0) out = this.#maskPieces(out);
    return redactShapes(out);
  }

  /**
   * Masks every run of text covered by pieces of a secret: a common
   * substring of length n >= MIN_SECRET_PIECE is exactly a run of n - 7
   * overlapping pieces, so this finds all of them in one pass.
   */
  #maskPieces(text: string): string {
    const n = MIN_SECRET_PIECE;
    let out = '';
    let copied = 0;
    let runEnd = -1;
    let runStart = -1;
    for (let i = 0; i + n <= text.length; i++) {
      if (!this.#pieces.has(text.slice(i, i + n))) continue;
      if (i > runEnd) {
        if (runStart >= 0) {
          out += text.slice(copied, runStart) + MASK;
          copied = runEnd;
        }
        runStart = i;
      }
      runEnd = i + n;
    }
    if (runStart < 0) return text;
    return out + text.slice(copied, runStart) + MASK + text.slice(runEnd);
  }
}

/** Masks what looks like a credential (v2 tokens, Authorization values, URL userinfo) in `text`. */
export function redactShapes(text: string): string {
  return text
    .replace(V2_TOKEN, (whole, secret: string) => whole.slice(0, whole.length - secret.length) + MASK)
    .replace(AUTH_HEADER, (_whole, prefix: string) => `${prefix}${MASK}`)
    .replace(AUTH_SCHEME, (_whole, scheme: string) => `${scheme} ${MASK}`)
    .replace(URL_USERINFO, (_whole, scheme: string) => `${scheme}${MASK}@`);
}

/** Redacts `text` with `secrets`, then cuts it to at most `max` characters. */
export function redactAndCut(text: string, max: number, redactor?: Redactor): string {
  const clean = redactor ? redactor.redact(text) : redactShapes(text);
  return clean.length <= max ? clean : `${clean.slice(0, Math.max(0, max - 1))}…`;
}
