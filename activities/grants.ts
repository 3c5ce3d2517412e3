import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { GRANT_ISSUER, GRANT_KEY_NAME, GRANT_TYP, type GrantClaims, type MintGrantInput } from '../contracts/grant';
import { loadPrivateKey, type SigningKey } from '../identity/keys';
import { grantInputDigest } from '../sdk/grant';

/**
 * Signs execution grants (contracts/grant.ts) with the governor's grant key (`<home>/keys/grant.private.jwk.json`).
 * The key is loaded once and kept; a load failure is retried on the next call (keys may be created meanwhile).
 */
export class GrantSigner {
  private key: Promise<SigningKey> | undefined;

  constructor(
    private readonly home: string,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  /** A grant for exactly `input`'s execution, valid `ttlMs` from now. */
  async mint(input: MintGrantInput): Promise<string> {
    const key = await this.signingKey();
    const iat = Math.floor(this.clock().getTime() / 1000);
    const claims: Omit<GrantClaims, 'iss' | 'aud' | 'iat' | 'exp' | 'jti'> = {
      chain: input.chainId,
      step: input.stepId,
      stepDigest: input.stepDigest,
      receipt: input.receipt,
      idk: input.idempotencyKey,
      input: grantInputDigest(input),
    };
    return new SignJWT(claims)
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: GRANT_TYP })
      .setIssuer(GRANT_ISSUER)
      .setAudience(input.audience)
      .setIssuedAt(iat)
      .setExpirationTime(iat + Math.max(1, Math.ceil(input.ttlMs / 1000)))
      .setJti(randomUUID())
      .sign(key.key);
  }

  private signingKey(): Promise<SigningKey> {
    const pending =
      this.key ??
      loadPrivateKey(this.home, GRANT_KEY_NAME).catch((err: unknown) => {
        this.key = undefined;
        throw err;
      });
    this.key = pending;
    return pending;
  }
}
