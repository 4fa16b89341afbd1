/**
 * The API tokens FakeArvados knows, found by secret (v1 or v2 form) or by
 * uuid, as the API server's `api_client_authorizations` table.
 *
 * @module
 */
import { random36 } from './random-id.js';

/** An API token known to the fake. */
export interface TokenRecord {
  /** `zzzzz-gj3su-...`: what `locked_by_uuid` holds for containers this token locked. */
  uuid: string;
  /** The secret (v1 form). The v2 form `v2/<uuid>/<secret>` is accepted too. */
  secret: string;
  owner_uuid: string;
  admin: boolean;
  /** Set for the per-container token made at lock time (`auth_uuid`). */
  containerUuid?: string;
  expired?: boolean;
}

/** The tokens of one fake cluster. */
export class TokenTable {
  readonly #clusterId: string;
  readonly #bySecret = new Map<string, TokenRecord>();
  readonly #byUuid = new Map<string, TokenRecord>();

  constructor(clusterId: string) {
    this.#clusterId = clusterId;
  }

  /** Adds a token; a uuid or secret not given is generated, `admin` defaults to true. */
  add(t: Partial<TokenRecord> = {}): TokenRecord {
    const rec: TokenRecord = {
      uuid: t.uuid ?? `${this.#clusterId}-gj3su-${random36(15)}`,
      secret: t.secret ?? random36(50),
      owner_uuid: t.owner_uuid ?? `${this.#clusterId}-tpzed-000000000000000`,
      admin: t.admin ?? true,
      containerUuid: t.containerUuid,
    };
    if (this.#byUuid.has(rec.uuid)) throw new TypeError(`token ${rec.uuid} exists`);
    this.#bySecret.set(rec.secret, rec);
    this.#byUuid.set(rec.uuid, rec);
    return rec;
  }

  /** Finds a live token from its v1 or v2 form. */
  authenticate(token: string | undefined): TokenRecord | undefined {
    if (!token) return undefined;
    let rec: TokenRecord | undefined;
    const v2 = /^v2\/([0-9a-z]{5}-gj3su-[0-9a-z]{15})\/([^/]+)(?:\/[^/]+)?$/.exec(token);
    if (v2) {
      rec = this.#byUuid.get(v2[1]);
      if (rec && rec.secret !== v2[2]) rec = undefined;
    } else {
      rec = this.#bySecret.get(token);
    }
    return rec && !rec.expired ? rec : undefined;
  }

  /** The token with this uuid, live or not. */
  byUuid(uuid: string): TokenRecord | undefined {
    return this.#byUuid.get(uuid);
  }

  /** Makes a token (named by uuid or secret) invalid from now on. */
  revoke(uuidOrSecret: string): void {
    const rec = this.#byUuid.get(uuidOrSecret) ?? this.#bySecret.get(uuidOrSecret);
    if (rec) rec.expired = true;
  }
}
