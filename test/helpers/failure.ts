/** Awaiting a call that must fail with an API error. */
import { expect } from '@jest/globals';
import { ArvadosApiError } from '../../src/index.js';

/** Resolves with the `ArvadosApiError` that `p` rejects with; fails the test otherwise. */
export async function failure(p: Promise<unknown>): Promise<ArvadosApiError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ArvadosApiError);
    return err as ArvadosApiError;
  }
  throw new Error('expected a failure');
}
