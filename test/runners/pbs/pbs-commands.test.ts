/**
 * The shared batch behaviour list with PBS through real processes: the PBS
 * stand-in's qsub/qstat/qdel/qalter scripts first on PATH (bare command
 * names, as on a submission host), following OpenPBS 23.06's output formats.
 * No PBS can run here (and Debian packages none), so this is the system tier's
 * PBS: every command is a process the runner spawns and reads.
 */
import { afterAll } from '@jest/globals';
import { defineBatchBehaviour } from '../batch/behaviour.js';
import { pbsEnvironment } from './pbs-env.js';

const env = pbsEnvironment('commands');
afterAll(() => env.cleanup());

defineBatchBehaviour(env);
