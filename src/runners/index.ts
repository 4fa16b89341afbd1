/**
 * Runners: what to do with a container once the Dispatcher has it. Each
 * runner uses only the Dispatcher's public API.
 *
 * @module
 */

// Local runner: crunch-run as a child process on this machine.
export * from './local/index.js';

// Slurm runner (src/runners/slurm/): add its exports here.
