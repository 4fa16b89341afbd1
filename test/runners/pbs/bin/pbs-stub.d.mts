// Types of the PBS stand-in (pbs-stub.mjs), for the tests that call it in-process.
export interface PbsAnswer {
  code: number;
  stdout: string;
  stderr: string;
}
export function pbsCommand(dir: string, command: string, args: readonly string[], options?: { stdin?: string; env?: NodeJS.ProcessEnv }): PbsAnswer;
export function main(command: string): void;
