/**
 * The client {@link FakeArvados.client} hands out in HTTPS mode.
 *
 * @module
 */
import { ArvadosClient } from '../client/client.js';

/**
 * A client of the fake's own HTTPS server: it verifies the self-signed
 * certificate itself, and tells the child processes it equips to skip
 * verification, which is all a child can be told through
 * `ARVADOS_API_HOST_INSECURE` (without it, a crunch-run it starts fails on
 * "self-signed certificate" and its container cycles through lock and unlock).
 */
export class FakeServerClient extends ArvadosClient {
  override credentialsEnv(): ReturnType<ArvadosClient['credentialsEnv']> {
    return { ...super.credentialsEnv(), ARVADOS_API_HOST_INSECURE: '1' };
  }
}
