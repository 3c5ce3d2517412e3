/** Workload identity: dev key material, dev issuance, and the fail-closed verifiers used by `authorize`. */
export {
  DEV_KEY_NAMES,
  KEY_ALG,
  governorHome,
  initKeys,
  keyPaths,
  keysDir,
  loadPrivateKey,
  loadPublicJwks,
  publicJwk,
  type DevKeyName,
  type KeyPaths,
  type KeySummary,
  type KeysSummary,
  type SigningKey,
} from './keys';
export {
  ATTESTATION_TYP,
  CREDENTIAL_TYP,
  DEV_ATTESTER,
  DEV_ISSUER,
  GOVERNOR_AUDIENCE,
  devImageDigest,
  issueAttestation,
  issueCredential,
  type AttestationClaims,
  type CredentialClaims,
  type IssueAttestationOptions,
  type IssueCredentialOptions,
} from './issue';
export { clearJwksCache, createJwksResolver, type JwksResolver } from './jwks';
export {
  verifyAttestation,
  verifyCredential,
  type VerifiedAttestation,
  type VerifiedCredential,
  type VerifyOptions,
} from './verify';
