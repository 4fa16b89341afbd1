// Finding pieces of a secret in text, for the token-safety tests.

/** Every 8-character piece of `secret` that occurs in `text`. */
export function fragmentsIn(text: string, secret: string): string[] {
  const found: string[] = [];
  for (let i = 0; i + 8 <= secret.length; i++) {
    const piece = secret.slice(i, i + 8);
    if (text.includes(piece)) found.push(piece);
  }
  return found;
}
