/**
 * Finding an executable the way a shell would, so the CLI can fail at
 * startup instead of on the first container.
 *
 * @module
 */
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * The path of `command`: itself if it contains a `/`, else the first
 * executable file of that name in `PATH`. Throws an Error saying what is wrong.
 */
export function findExecutable(command: string, path: string | undefined = process.env.PATH): string {
  if (command.includes('/')) {
    const p = isAbsolute(command) ? command : resolve(command);
    let isFile = false;
    try {
      isFile = statSync(p).isFile();
    } catch {
      throw new Error(`"${command}" does not exist`);
    }
    if (!isFile || !isExecutableFile(p)) throw new Error(`"${command}" is not an executable file`);
    return p;
  }
  for (const dir of (path ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, command);
    if (isExecutableFile(p)) return p;
  }
  throw new Error(`"${command}" was not found on PATH`);
}
