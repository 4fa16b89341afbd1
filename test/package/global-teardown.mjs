// Removes what global-setup.mjs packed and installed.
import { rmSync } from 'node:fs';

export default function globalTeardown() {
  const packed = process.env.ARVADOS_DISPATCH_PACKED;
  if (packed) rmSync(JSON.parse(packed).work, { recursive: true, force: true });
}
