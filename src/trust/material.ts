/**
 * Live TLS material: the current leaf, key and roots, fed by the leaf and roots watches.
 * Everything a connection needs is computed here once per change — parsed roots, the
 * `node:tls` secure contexts, the identity checks' cache — never per connection.
 * @module
 */
import crypto from "node:crypto";
import tls from "node:tls";
import type { CARootList, LeafCert } from "../agent/types.ts";
import { CertificateError, type CertificateInfo, parseCertificate } from "./certificate.ts";
import { ChainError, type KeyPurpose, verifyChain } from "./chain.ts";
import { splitPemCertificates } from "./pem.ts";
import { parseSpiffeId, type ServiceSpiffeId, SpiffeIdError } from "./spiffe.ts";

/**
 * How long before its expiry an unrenewed leaf makes the proxy not ready (and the leaf watch
 * warn and ask again): `marginMs` when given, else 10 % of the leaf's lifetime, at most 1 h.
 *
 * @example
 * ```ts
 * import { leafExpiryMargin } from "@meshgate/meshgate";
 * const leaf = { notBefore: new Date("2025-01-01"), notAfter: new Date("2025-01-04") };
 * console.log(leafExpiryMargin(leaf)); // 3600000: 10 % of 72 h, at most 1 h
 * console.log(leafExpiryMargin(leaf, 60_000)); // 60000
 * ```
 */
export function leafExpiryMargin(
  leaf: Pick<CertificateInfo, "notBefore" | "notAfter">,
  marginMs?: number,
): number {
  if (marginMs !== undefined && marginMs > 0) return marginMs;
  return Math.min((leaf.notAfter.getTime() - leaf.notBefore.getTime()) * 0.1, 3600_000);
}

/** Why a peer certificate was refused. */
export type IdentityFailure = "no_cert" | "bad_chain" | "bad_identity";

/** The outcome of checking a peer's certificate. */
export type PeerVerdict =
  | {
    ok: true;
    /** The peer's service identity. */
    id: ServiceSpiffeId;
    /** The first URI SAN, as presented. */
    uri: string;
    /** Colon-hex serial. */
    serial: string;
    /** When the peer's certificate expires. */
    notAfter: Date;
    /** Epoch ms of the earliest expiry in the verified path: the verdict holds until then. */
    validUntil: number;
  }
  | { ok: false; reason: IdentityFailure; detail: string };

/** The current leaf, parsed. */
export interface LeafState {
  /** The agent's answer. */
  cert: LeafCert;
  /** The parsed leaf (first PEM of `CertPEM`). */
  info: CertificateInfo;
}

/** The current roots, parsed. */
export interface RootsState {
  /** The agent's answer. */
  roots: CARootList;
  /** Every trusted root, parsed. */
  infos: CertificateInfo[];
  /** Every intermediate the roots list, parsed (cross-signed roots during a rotation). */
  intermediates: CertificateInfo[];
  /** Root PEMs for `node:tls`. */
  pems: string[];
}

/** What changed, for listeners. */
export type MaterialChange = "leaf" | "roots";

/** Options of a {@linkcode TlsMaterial}. */
export interface TlsMaterialOptions {
  /** Minimum TLS version. @default {"TLSv1.2"} */
  minVersion?: "TLSv1.2" | "TLSv1.3";
  /** How many verified peer certificates to remember. @default {4096} */
  cacheSize?: number;
}

/**
 * The TLS identity of a service: holds the latest leaf and roots and the secure contexts made
 * from them, and checks peers against the mesh roots with a cache that a root change clears.
 *
 * @example
 * ```ts
 * import { AgentClient, TlsMaterial } from "@meshgate/meshgate";
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 *
 * await using dev = await startDevAgent(); // the Consul test double; any agent will do
 * await using agent = new AgentClient({ address: dev.address });
 * const material = new TlsMaterial();
 * // A proxy feeds both from watches (agent.watchRoots(), agent.watchLeaf("web")).
 * await material.setRoots((await agent.roots()).value);
 * await material.setLeaf((await agent.leaf("web")).value);
 * await material.ready;
 * console.log(material.leaf?.info.uris[0]); // spiffe://<trust domain>/ns/default/dc/dc1/svc/web
 * ```
 */
export class TlsMaterial {
  #leaf?: LeafState;
  #roots?: RootsState;
  #context?: tls.SecureContext;
  readonly #verified = new Map<string, { verdict: Promise<PeerVerdict>; validUntil: number }>();
  #rootsGeneration = 0;
  readonly #listeners = new Set<(change: MaterialChange) => void>();
  readonly #options: TlsMaterialOptions;
  readonly #ready = Promise.withResolvers<void>();
  #generation = 0;
  #leafTrusted?: boolean;

  /** Creates empty material; it becomes ready once a leaf and roots are set. */
  constructor(options: TlsMaterialOptions = {}) {
    this.#options = options;
  }

  /** The current leaf, if loaded. */
  get leaf(): LeafState | undefined {
    return this.#leaf;
  }

  /** The current roots, if loaded. */
  get roots(): RootsState | undefined {
    return this.#roots;
  }

  /** The trust domain of the current roots. */
  get trustDomain(): string | undefined {
    return this.#roots?.roots.TrustDomain.toLowerCase();
  }

  /** Whether both leaf and roots are loaded. */
  get isReady(): boolean {
    return !!(this.#leaf && this.#roots);
  }

  /** Resolves once leaf and roots are both loaded. */
  get ready(): Promise<void> {
    return this.#ready.promise;
  }

  /**
   * The `node:tls` secure context that every outbound dial presents our leaf with, rebuilt
   * only when the material changes. Its `ca` is the mesh roots and nothing else (no public
   * roots), so the TLS layer itself refuses a server that does not chain to them (dials set
   * `rejectUnauthorized: true`); our own check ({@linkcode TlsMaterial.verifyPeer}) runs on
   * top and decides identity.
   */
  get secureContext(): tls.SecureContext | undefined {
    return this.#context;
  }

  /**
   * Options for `tls.createServer`/`setSecureContext` with the current material: our leaf and
   * key, and the mesh roots as the only trust anchors (`ca`), against which the TLS layer
   * verifies the peer when `rejectUnauthorized` is set (the caller's `requestCert` and
   * `rejectUnauthorized` are not part of a secure context).
   */
  serverOptions(): tls.SecureContextOptions {
    if (!this.#leaf || !this.#roots) throw new Error("TLS material not loaded");
    return {
      cert: this.#leaf.cert.CertPEM,
      key: this.#leaf.cert.PrivateKeyPEM,
      ca: this.#roots.pems,
      minVersion: this.#options.minVersion ?? "TLSv1.2",
    };
  }

  /** Listens for changes; returns an unsubscribe function. */
  onChange(listener: (change: MaterialChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Installs a new leaf. Refuses (throws) a leaf that does not parse, has expired, or whose
   * `PrivateKeyPEM` does not parse or does not belong to the certificate, keeping the current
   * one: an expired certificate is never served, and a leaf we cannot prove we own would fail
   * every handshake (`tls.createSecureContext` accepts a mismatched or garbage key silently).
   */
  async setLeaf(cert: LeafCert): Promise<LeafState> {
    const info = await parseCertificate(cert.CertPEM);
    if (info.notAfter.getTime() <= Date.now()) {
      throw new ChainError("expired", `leaf ${cert.SerialNumber} expired at ${cert.ValidBefore}`);
    }
    const keyProblem = this.#keyProblem(info, cert.PrivateKeyPEM);
    if (keyProblem) throw new CertificateError(`leaf ${cert.SerialNumber}: ${keyProblem}`);
    this.#leaf = { cert, info };
    this.#rebuild("leaf");
    return this.#leaf;
  }

  /** Why `keyPem` is not the private key of `leaf`, or `undefined` when it is. */
  #keyProblem(leaf: CertificateInfo, keyPem: string): string | undefined {
    let key: crypto.KeyObject;
    try {
      key = crypto.createPrivateKey(keyPem);
    } catch (err) {
      return `PrivateKeyPEM does not parse as a private key (${(err as Error).message})`;
    }
    const spki = { type: "spki", format: "der" } as const;
    const ours = crypto.createPublicKey(key).export(spki);
    const certified = new crypto.X509Certificate(leaf.der).publicKey.export(spki);
    return ours.equals(certified)
      ? undefined
      : "PrivateKeyPEM does not match the certificate's public key";
  }

  /**
   * Whether the leaf chains to the current roots, as last checked after a change (`undefined`
   * until checked). False means peers holding these roots cannot trust us: a renewal is due.
   */
  get leafTrusted(): boolean | undefined {
    return this.#leafTrusted;
  }

  /** Whether the installed leaf has expired (it must not be served; wait for a renewal). */
  get leafExpired(): boolean {
    return !!this.#leaf && this.#leaf.info.notAfter.getTime() <= Date.now();
  }

  /** Installs new roots; clears the peer-verification cache. */
  async setRoots(roots: CARootList): Promise<RootsState> {
    const infos = await Promise.all(roots.Roots.map((r) => parseCertificate(r.RootCert)));
    const intermediatePems = roots.Roots.flatMap((r) => r.IntermediateCerts ?? []);
    const intermediates = await Promise.all(intermediatePems.map((p) => parseCertificate(p)));
    this.#roots = {
      roots,
      infos,
      intermediates,
      pems: roots.Roots.map((r) => r.RootCert),
    };
    this.#verified.clear();
    this.#rootsGeneration++;
    this.#rebuild("roots");
    return this.#roots;
  }

  #rebuild(change: MaterialChange): void {
    if (this.#leaf && this.#roots) {
      this.#context = tls.createSecureContext(this.serverOptions());
      this.#ready.resolve();
      const generation = ++this.#generation;
      void this.leafChainsToRoots().then((ok) => {
        if (generation === this.#generation) this.#leafTrusted = ok;
      });
    }
    for (const l of this.#listeners) l(change);
  }

  /**
   * Whether the leaf chains to the current roots (false during a rotation until the agent
   * re-issues it, and a warning sign if it stays false).
   */
  async leafChainsToRoots(): Promise<boolean> {
    if (!this.#leaf || !this.#roots) return false;
    const chain = splitPemCertificates(this.#leaf.cert.CertPEM).slice(1);
    const extra = await Promise.all(chain.map((p) => parseCertificate(p)));
    try {
      await verifyChain(
        this.#leaf.info,
        [...extra, ...this.#roots.intermediates],
        this.#roots.infos,
      );
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Checks a peer certificate (DER, with the chain it presented) against the mesh roots —
   * never a TLS stack's trust store alone — for `purpose` (`clientAuth` for a caller,
   * `serverAuth` for a server we dial), and requires a service SPIFFE ID in our trust domain
   * and partition. Only acceptances are remembered, keyed by the whole presented chain, until
   * the earliest expiry in their path or a roots change: a stranger's refused certificates
   * cost a check each but never memory.
   */
  verifyPeer(
    der: Uint8Array | undefined,
    chain: Uint8Array[] = [],
    purpose: KeyPurpose = "any",
  ): Promise<PeerVerdict> {
    if (!der || der.length === 0) {
      return Promise.resolve({ ok: false, reason: "no_cert", detail: "no client certificate" });
    }
    const key = `${purpose}:${der.toBase64()}:${chain.map((c) => c.toBase64()).join(":")}`;
    const cached = this.#verified.get(key);
    if (cached && cached.validUntil > Date.now()) return cached.verdict;
    if (cached) this.#verified.delete(key);
    const generation = this.#rootsGeneration;
    const verdict = this.#verify(der, chain, purpose);
    // Joins identical checks in flight; refusals leave the map when they settle.
    const entry = { verdict, validUntil: Infinity };
    this.#verified.set(key, entry);
    void verdict.then((v) => {
      if (this.#verified.get(key) !== entry) return;
      if (!v.ok || generation !== this.#rootsGeneration) this.#verified.delete(key);
      else {
        entry.validUntil = v.validUntil;
        const max = this.#options.cacheSize ?? 4096;
        if (this.#verified.size > max) this.#verified.delete(this.#verified.keys().next().value!);
      }
    });
    return verdict;
  }

  /** Our admin partition, from our leaf's SPIFFE ID (`default` until a leaf is loaded). */
  #partition(): string {
    const uri = this.#leaf?.info.uris[0];
    if (!uri) return "default";
    try {
      const id = parseSpiffeId(uri);
      return "partition" in id ? id.partition : "default";
    } catch {
      return "default";
    }
  }

  async #verify(der: Uint8Array, chain: Uint8Array[], purpose: KeyPurpose): Promise<PeerVerdict> {
    const roots = this.#roots;
    if (!roots) return { ok: false, reason: "bad_chain", detail: "no roots loaded" };
    let leaf: CertificateInfo;
    let validUntil: number;
    try {
      leaf = await parseCertificate(der);
      const presented = await Promise.all(chain.map((c) => parseCertificate(c)));
      const path = await verifyChain(leaf, [...presented, ...roots.intermediates], roots.infos, {
        purpose,
      });
      validUntil = Math.min(...path.map((c) => c.notAfter.getTime()));
    } catch (err) {
      return { ok: false, reason: "bad_chain", detail: (err as Error).message };
    }
    const uri = leaf.uris[0];
    if (!uri) return { ok: false, reason: "bad_identity", detail: "certificate has no URI SAN" };
    try {
      const id = parseSpiffeId(uri);
      if (id.kind !== "service") {
        return { ok: false, reason: "bad_identity", detail: `${uri} is not a service identity` };
      }
      if (id.trustDomain !== roots.roots.TrustDomain.toLowerCase()) {
        return {
          ok: false,
          reason: "bad_identity",
          detail: `${uri} is not in trust domain ${roots.roots.TrustDomain}`,
        };
      }
      const partition = this.#partition();
      if (id.partition !== partition) {
        return {
          ok: false,
          reason: "bad_identity",
          detail: `${uri} is not in our admin partition ${partition}`,
        };
      }
      return { ok: true, id, uri, serial: leaf.serial, notAfter: leaf.notAfter, validUntil };
    } catch (err) {
      if (err instanceof SpiffeIdError) {
        return { ok: false, reason: "bad_identity", detail: err.message };
      }
      throw err;
    }
  }
}
