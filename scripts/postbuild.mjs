// The CLI entry point must be executable once built (npm also does this when it
// links a `bin`, but a fresh `npm run build` in a clone should work as well).
import { chmodSync, existsSync } from 'node:fs';

const bin = new URL('../dist/cli/main.js', import.meta.url);
if (existsSync(bin)) chmodSync(bin, 0o755);
