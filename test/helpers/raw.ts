// A bare HTTP(S) request to FakeArvados, for tests that must control every
// byte of the request (paths, bodies, headers) rather than go through the
// client. The one implementation lives in src/testing/http.ts, shared with
// the crunch-run simulator.
import type { FakeArvados } from '../../src/testing/index.js';
import { rawRequest, type RawRequest, type RawResponse } from '../../src/testing/http.js';

export type { RawResponse };

export function raw(fake: FakeArvados, req: Omit<RawRequest, 'base' | 'ca'> & { method: string }): Promise<RawResponse> {
  return rawRequest({ ...req, base: fake.url, ca: fake.caCert });
}
