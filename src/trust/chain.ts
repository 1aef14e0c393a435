/**
 * Chain verification against the mesh roots, done by our own code so that mesh identity never
 * depends on a TLS stack's trust store (which may add the public roots).
 * @module
 */
import { type CertificateInfo, x509Of } from "./certificate.ts";

/** Why a chain did not verify. */
export type ChainFailure = "expired" | "not_yet_valid" | "no_issuer" | "bad_signature" | "too_long";

/**
 * A certificate chain does not lead to a trusted root.
 *
 * @example
 * ```ts
 * import { ChainError } from "@meshgate/meshgate";
 * console.log(new ChainError("no_issuer", "no root for issuer CN=x").reason);
 * ```
 */
export class ChainError extends Error {
  /**
   * Creates the error.
   * @param reason machine-readable failure
   * @param detail human-readable detail
   */
  constructor(reason: ChainFailure, detail: string) {
    super(`chain: ${detail}`);
    this.name = "ChainError";
    this.reason = reason;
  }
  /** Machine-readable failure. */
  readonly reason: ChainFailure;
}

/** Options of {@linkcode verifyChain}. */
export interface VerifyChainOptions {
  /** Time to check validity at. @default {new Date()} */
  at?: Date;
  /** Longest chain accepted, leaf included. @default {5} */
  maxDepth?: number;
}

function sameKey(a: CertificateInfo, b: CertificateInfo): boolean {
  return a.subject === b.subject && a.subjectKeyId === b.subjectKeyId &&
    x509Of(a).publicKey.rawData.byteLength === x509Of(b).publicKey.rawData.byteLength &&
    new Uint8Array(x509Of(a).publicKey.rawData).every((v, i) =>
      v === new Uint8Array(x509Of(b).publicKey.rawData)[i]
    );
}

function checkValidity(c: CertificateInfo, at: Date): void {
  if (at < c.notBefore) {
    throw new ChainError(
      "not_yet_valid",
      `${c.subject || c.uris[0] || c.serial} not valid before ${c.notBefore.toISOString()}`,
    );
  }
  if (at > c.notAfter) {
    throw new ChainError(
      "expired",
      `${c.subject || c.uris[0] || c.serial} expired at ${c.notAfter.toISOString()}`,
    );
  }
}

/**
 * Verifies that `leaf` chains to one of `roots`, through any of `intermediates`, with every
 * certificate valid at `at` and every signature correct. Issuers are found by subject name and,
 * when both sides carry them, by AKID = SKID.
 *
 * @example
 * ```ts ignore
 * import { parseCertificate, verifyChain } from "@meshgate/meshgate";
 * const leaf = await parseCertificate(leafPem);
 * const root = await parseCertificate(rootPem);
 * await verifyChain(leaf, [], [root]); // throws ChainError when it does not verify
 * ```
 * @throws {ChainError} naming the first problem found
 */
export async function verifyChain(
  leaf: CertificateInfo,
  intermediates: readonly CertificateInfo[],
  roots: readonly CertificateInfo[],
  options: VerifyChainOptions = {},
): Promise<void> {
  const at = options.at ?? new Date();
  const maxDepth = options.maxDepth ?? 5;
  checkValidity(leaf, at);
  let current = leaf;
  for (let depth = 1; depth <= maxDepth; depth++) {
    const fits = (c: CertificateInfo) =>
      c.subject === current.issuer &&
      (!current.authorityKeyId || !c.subjectKeyId || c.subjectKeyId === current.authorityKeyId);
    // A trusted root that signed `current` ends the walk.
    for (const root of roots.filter(fits)) {
      if (
        await x509Of(current).verify({ publicKey: x509Of(root).publicKey, signatureOnly: true })
      ) {
        checkValidity(root, at);
        return;
      }
    }
    // Otherwise climb through an intermediate (e.g. a root cross-signed by an older root).
    let next: CertificateInfo | undefined;
    for (const candidate of intermediates.filter(fits)) {
      if (candidate === current || sameKey(candidate, current)) continue;
      if (
        await x509Of(current).verify({
          publicKey: x509Of(candidate).publicKey,
          signatureOnly: true,
        })
      ) {
        next = candidate;
        break;
      }
    }
    if (!next) {
      const anyNamed = [...roots, ...intermediates].some(fits);
      throw anyNamed
        ? new ChainError(
          "bad_signature",
          `signature of ${
            current.subject || current.uris[0] || current.serial
          } does not verify against its issuer`,
        )
        : new ChainError("no_issuer", `no trusted issuer for "${current.issuer}"`);
    }
    checkValidity(next, at);
    current = next;
  }
  throw new ChainError("too_long", `chain longer than ${maxDepth}`);
}
