// The packed and installed package of this run (made once by global-setup.mjs).
import { join } from 'node:path';

/** Where the tarball and the project it is installed in are. */
export interface Packed {
  /** The folder holding both. */
  work: string;
  /** The `npm pack` tarball. */
  tarball: string;
  /** An empty project with only the tarball installed, `--omit=dev`. */
  app: string;
  /** The files the tarball holds, sorted. */
  files: string[];
}

/** The package of this run; throws when the system tier's globalSetup did not run. */
export function packed(): Packed {
  const text = process.env.ARVADOS_DISPATCH_PACKED;
  if (!text) throw new Error('no packed package: run these tests with `npm run test:system` (its globalSetup packs and installs it)');
  return JSON.parse(text) as Packed;
}

/** The installed `arvados-dispatch` bin. */
export const installedBin = (p: Packed): string => join(p.app, 'node_modules', '.bin', 'arvados-dispatch');

/** An environment for consumers: none of the test runner's NODE_OPTIONS. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, npm_config_fund: 'false', npm_config_audit: 'false', npm_config_update_notifier: 'false' };
  delete e.NODE_OPTIONS;
  return e;
}
