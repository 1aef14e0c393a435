/**
 * X.509 path validation against the mesh roots, done by our own code so that mesh identity
 * never rests on a TLS stack alone. It follows Go's `crypto/x509` `Verify` (what Consul's CA and
 * built-in proxy rely on) and is stricter where Go is lenient: a `keyUsage` extension must allow
 * `keyCertSign` on an issuer, a leaf must not be a CA, AKID and SKID must agree when both are
 * present, weak keys and SHA-1 signatures are refused, and paths have a depth limit.
 * `tests/trust/x509_differential_test.ts` holds it to Go's verdicts on a generated corpus.
 * @module
 */
import { type CertificateInfo, EKU, x509Of } from "./certificate.ts";

/** Why a chain did not verify. */
export type ChainFailure =
  | "expired"
  | "not_yet_valid"
  | "no_issuer"
  | "bad_signature"
  | "too_long"
  | "not_ca"
  | "key_usage"
  | "path_len"
  | "ext_key_usage"
  | "critical_extension"
  | "weak"
  | "leaf_is_ca"
  | "name_constraints";

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

/**
 * What the leaf is used for: `clientAuth` for a caller presented to a public listener,
 * `serverAuth` for a server an upstream dials, `any` to skip the extended-key-usage check.
 */
export type KeyPurpose = "clientAuth" | "serverAuth" | "any";

/** Options of {@linkcode verifyChain}. */
export interface VerifyChainOptions {
  /** Time to check every certificate's validity at. @default {new Date()} */
  at?: Date;
  /** Most certificates in a path, leaf and root included. @default {5} */
  maxDepth?: number;
  /** The extended key usage the whole path must permit. @default {"any"} */
  purpose?: KeyPurpose;
}

const KEY_CERT_SIGN = 32;

function nameOf(c: CertificateInfo): string {
  return c.uris[0] || c.subject || c.serial;
}

/** Why `c` is too weak to appear in a path, or `undefined`. */
function weakKey(c: CertificateInfo): string | undefined {
  if (c.keyType === "rsa" && c.keyBits < 2048) return `RSA ${c.keyBits}-bit key`;
  if (c.keyType === "ec" && c.keyBits < 256) return `P-${c.keyBits} key`;
  return undefined;
}

function weakSignature(c: CertificateInfo): string | undefined {
  return /SHA-1$|MD5|MD2/i.test(c.signatureAlgorithm)
    ? `${c.signatureAlgorithm} signature`
    : undefined;
}

/** Checks that hold for a certificate wherever it sits in a path. */
function checkCertificate(c: CertificateInfo, at: Date): void {
  if (c.unhandledCriticalExtensions.length > 0) {
    throw new ChainError(
      "critical_extension",
      `${nameOf(c)} has unknown critical extension ${c.unhandledCriticalExtensions.join(", ")}`,
    );
  }
  if (at < c.notBefore) {
    throw new ChainError(
      "not_yet_valid",
      `${nameOf(c)} not valid before ${c.notBefore.toISOString()}`,
    );
  }
  if (at > c.notAfter) {
    throw new ChainError("expired", `${nameOf(c)} expired at ${c.notAfter.toISOString()}`);
  }
  const weak = weakKey(c);
  if (weak) throw new ChainError("weak", `${nameOf(c)} has a weak ${weak}`);
}

/** Checks that an issuer may sign the `below` certificates under it (leaf first). */
function checkIssuer(issuer: CertificateInfo, below: readonly CertificateInfo[]): void {
  if (!issuer.hasBasicConstraints || !issuer.isCA) {
    throw new ChainError(
      "not_ca",
      `${nameOf(issuer)} is not a CA but issued ${nameOf(below.at(-1)!)}`,
    );
  }
  if (issuer.keyUsage !== undefined && !(issuer.keyUsage & KEY_CERT_SIGN)) {
    throw new ChainError("key_usage", `${nameOf(issuer)} key usage does not allow keyCertSign`);
  }
  // Intermediates between this issuer and the leaf.
  const intermediates = below.length - 1;
  if (issuer.pathLenConstraint !== undefined && intermediates > issuer.pathLenConstraint) {
    throw new ChainError(
      "path_len",
      `${
        nameOf(issuer)
      } allows ${issuer.pathLenConstraint} intermediates below it, not ${intermediates}`,
    );
  }
  // As Go does: an issuer's name constraints bind the names of every certificate below it.
  if (issuer.nameConstraints) { for (const c of below) checkNameConstraints(issuer, c); }
}

/** Go's `matchDomainConstraint`: `.x` matches proper subdomains, `x` also x itself. */
function domainMatches(host: string, constraint: string): boolean {
  if (constraint === "") return true;
  const h = host.toLowerCase().replace(/\.$/, "");
  const c = constraint.toLowerCase();
  if (c.startsWith(".")) return h.endsWith(c);
  return h === c || h.endsWith(`.${c}`);
}

function checkNameConstraints(issuer: CertificateInfo, subject: CertificateInfo): void {
  const nc = issuer.nameConstraints!;
  if (nc.unsupported.length > 0) {
    throw new ChainError(
      "name_constraints",
      `${nameOf(issuer)} constrains name types we do not evaluate (${nc.unsupported.join(", ")})`,
    );
  }
  const check = (
    kind: string,
    name: string,
    host: string,
    permitted: string[],
    excluded: string[],
  ) => {
    if (excluded.some((c) => domainMatches(host, c))) {
      throw new ChainError("name_constraints", `${kind} ${name} is excluded by ${nameOf(issuer)}`);
    }
    if (permitted.length > 0 && !permitted.some((c) => domainMatches(host, c))) {
      throw new ChainError(
        "name_constraints",
        `${kind} ${name} is not permitted by ${nameOf(issuer)}`,
      );
    }
  };
  for (const dns of subject.dnsNames) check("DNS name", dns, dns, nc.permittedDns, nc.excludedDns);
  if (nc.permittedUri.length + nc.excludedUri.length === 0) return;
  for (const uri of subject.uris) {
    let host = "";
    try {
      host = new URL(uri).hostname;
    } catch { /* an unparseable URI matches no permitted domain */ }
    check("URI", uri, host, nc.permittedUri, nc.excludedUri);
  }
}

/** Go's `checkChainForKeyUsage`: every certificate with an EKU must allow the purpose. */
function checkPurpose(path: readonly CertificateInfo[], purpose: KeyPurpose): void {
  if (purpose === "any") return;
  const wanted = EKU[purpose];
  for (const c of path) {
    const ekus = c.extendedKeyUsages;
    if (ekus.length === 0 || ekus.includes(EKU.any) || ekus.includes(wanted)) continue;
    throw new ChainError(
      "ext_key_usage",
      `${nameOf(c)} extended key usage does not permit ${purpose}`,
    );
  }
}

function sameCertificate(a: CertificateInfo, b: CertificateInfo): boolean {
  return a === b || a.sha1Fingerprint === b.sha1Fingerprint;
}

/** Same subject and key: a cross-signed twin, which must not appear twice in a path. */
function sameEntity(a: CertificateInfo, b: CertificateInfo): boolean {
  if (a.rawSubject !== b.rawSubject) return false;
  const ka = new Uint8Array(x509Of(a).publicKey.rawData);
  const kb = new Uint8Array(x509Of(b).publicKey.rawData);
  return ka.length === kb.length && ka.every((v, i) => v === kb[i]);
}

/**
 * Verifies that `leaf` chains to one of `roots`, through any of `intermediates` (in any order,
 * duplicates and strangers ignored). Every path is explored, as Go does; the first that holds
 * wins. A path holds when every signature verifies, every certificate is within its validity
 * window at `at`, has no unknown critical extension and no weak key or SHA-1 signature, every
 * issuer is a CA allowed to sign certificates at that depth (basicConstraints, keyUsage,
 * pathLenConstraint, name constraints), the leaf is not a CA, names chain exactly (and AKID
 * matches SKID where both exist), and every certificate's extended key usage permits `purpose`.
 * Resolves with the path, leaf first and root last.
 *
 * @example
 * ```ts
 * import { ChainError, parseCertificate, verifyChain } from "@meshgate/meshgate";
 * import { ConnectCA } from "@meshgate/meshgate/devagent";
 *
 * const ca = await ConnectCA.create(); // a test CA: its root, and a leaf it signs
 * const leaf = await parseCertificate((await ca.signLeaf("web")).cert.CertPEM);
 * const root = await parseCertificate(ca.activeRoot.RootCert);
 * const path = await verifyChain(leaf, [], [root], { purpose: "clientAuth" });
 * console.log(path.length); // 2: the leaf, then the root
 * const stranger = await parseCertificate((await ConnectCA.create()).activeRoot.RootCert);
 * const err = await verifyChain(leaf, [], [stranger]).catch((e: ChainError) => e);
 * console.log(err instanceof ChainError && err.reason); // no_issuer
 * ```
 * @throws {ChainError} naming the problem of the most promising path
 */
export async function verifyChain(
  leaf: CertificateInfo,
  intermediates: readonly CertificateInfo[],
  roots: readonly CertificateInfo[],
  options: VerifyChainOptions = {},
): Promise<CertificateInfo[]> {
  const at = options.at ?? new Date();
  const maxDepth = options.maxDepth ?? 5;
  const purpose = options.purpose ?? "any";
  checkCertificate(leaf, at);
  if (leaf.isCA) throw new ChainError("leaf_is_ca", `${nameOf(leaf)} is a CA, not a leaf`);
  const pool = intermediates.filter((c, i) =>
    intermediates.findIndex((d) => sameCertificate(c, d)) === i
  );
  // The first error met on the deepest path: the likeliest explanation of a refusal.
  let best: { depth: number; error: ChainError } | undefined;
  const fail = (depth: number, error: ChainError) => {
    if (!best || depth > best.depth) best = { depth, error };
  };

  const extend = async (path: CertificateInfo[]): Promise<CertificateInfo[] | undefined> => {
    const current = path.at(-1)!;
    const named = (c: CertificateInfo) => c.rawSubject === current.rawIssuer;
    const candidates = [
      ...roots.filter(named).map((cert) => ({ cert, isRoot: true })),
      ...pool.filter(named).map((cert) => ({ cert, isRoot: false })),
    ];
    if (candidates.length === 0) {
      fail(path.length, new ChainError("no_issuer", `no trusted issuer for "${current.issuer}"`));
      return undefined;
    }
    for (const { cert, isRoot } of candidates) {
      if (path.some((c) => sameEntity(c, cert))) continue;
      try {
        if (
          current.authorityKeyId && cert.subjectKeyId &&
          current.authorityKeyId !== cert.subjectKeyId
        ) {
          throw new ChainError(
            "no_issuer",
            `authority key ID of ${nameOf(current)} does not match ${nameOf(cert)}`,
          );
        }
        const signed = await x509Of(current).verify({
          publicKey: x509Of(cert).publicKey,
          signatureOnly: true,
        });
        if (!signed) {
          throw new ChainError(
            "bad_signature",
            `signature of ${nameOf(current)} does not verify against ${nameOf(cert)}`,
          );
        }
        const weak = weakSignature(current);
        if (weak) throw new ChainError("weak", `${nameOf(current)} has a weak ${weak}`);
        checkCertificate(cert, at);
        checkIssuer(cert, path);
        const next = [...path, cert];
        if (isRoot) {
          checkPurpose(next, purpose);
          return next;
        }
        if (next.length >= maxDepth) {
          throw new ChainError("too_long", `chain longer than ${maxDepth} certificates`);
        }
        const found = await extend(next);
        if (found) return found;
      } catch (err) {
        if (!(err instanceof ChainError)) throw err;
        fail(path.length + 1, err);
      }
    }
    return undefined;
  };

  const path = await extend([leaf]);
  if (path) return path;
  throw best?.error ?? new ChainError("no_issuer", `no trusted issuer for "${leaf.issuer}"`);
}
