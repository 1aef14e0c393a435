/**
 * The native-TLS outbound leg: dials a mesh endpoint with `Deno.connectTls` (our leaf as client
 * certificate, the mesh roots as `caCerts`, the chain target's SNI), reads the server's
 * certificate through the runtime's internal accessor, and runs OUR verification — the chain
 * against the mesh roots ({@linkcode TlsMaterial.verifyPeer}, `serverAuth`) and the expected
 * SPIFFE identity — before the caller may send a byte. Failures are values in the shape
 * `dialMesh` (the `node:tls` leg) gives them; nothing here throws on the data path.
 *
 * What the runtime gives and does not give (Deno 2.9, `ext/net/02_tls.js`, `ext/tls/lib.rs`):
 * - The TLS layer trusts the runtime's DEFAULT store plus `caCerts`: `create_client_config`
 *   adds `caCerts` to the store `DefaultTlsOptions` built at startup (Mozilla's roots unless
 *   `DENO_TLS_CA_STORE` says otherwise, plus `DENO_CERT`, `--cert`, `NODE_EXTRA_CA_CERTS`).
 *   `node:tls` with `ca` replaces the store instead. So on this leg our own check is what keeps
 *   public roots out: a server whose chain leads to a public root passes the TLS layer (the
 *   hostname is not checked) and is refused by ours (`bad_chain`). The TLS layer's store is
 *   mesh-only only in a process started with `DENO_TLS_CA_STORE=` (empty) and neither
 *   `DENO_CERT`, `--cert` nor `NODE_EXTRA_CA_CERTS`; {@linkcode nativeTlsSupport} says which.
 * - The accessor (`Deno[Deno.internal].getPeerCertificate`) returns the server's leaf only, not
 *   the intermediates it presented. Our check then uses the leaf and the intermediates the roots
 *   list (Consul lists them in `IntermediateCerts`); when that is not enough (`bad_chain`), the
 *   result asks for the `node:tls` leg, which sees the whole presented chain, to decide.
 * - A TLS connection cannot turn Nagle's algorithm off (`TlsConn` has no `setNoDelay`, and
 *   `Deno.startTls` takes no client certificate: denoland/deno#13617, #21496): a small write
 *   while an earlier one is unacknowledged waits for the peer's delayed ACK (≈ 40 ms on Linux).
 *   Measured through a hop (`bench/native_leg.ts`): a request written in two pieces has a p99
 *   of ≈ 47 ms (node:tls: ≈ 3 ms), and the first write after the handshake makes a new
 *   connection take ≈ 45 ms. This leg is therefore not the default.
 * @module
 */
import { deadline } from "../net/timers.ts";
import type { TlsMaterial } from "../trust/material.ts";
import type { DialFailure, DialFailureReason, MeshEndpoint } from "./dialer.ts";

/** Which roots the TLS layer of a native dial trusts besides ours (see the module doc). */
export type NativeTlsLayerRoots = "mesh-only" | "mesh-and-default" | "unknown";

/** Whether this runtime can run the native leg, and with what. */
export type NativeTlsSupport =
  | {
    available: true;
    /** `Deno.connectTls`. */
    connectTls: typeof Deno.connectTls;
    /** The runtime-internal symbol of `TlsConn`'s peer-certificate accessor. */
    peerCertificate: symbol;
    /** The runtime-internal symbol that sets the SNI apart from the dialled host, if any. */
    serverName?: symbol;
    /** What the TLS layer trusts besides the mesh roots (our own check trusts only these). */
    tlsLayerRoots: NativeTlsLayerRoots;
  }
  | {
    available: false;
    /** What is missing. */
    reason: string;
  };

/** The runtime pieces {@linkcode detectNativeTls} looks at (a `Deno` namespace). */
export interface NativeTlsRuntime {
  /** `Deno.connectTls`. */
  connectTls?: unknown;
  /** `Deno.internal`: the key of the runtime-internal object. */
  internal?: unknown;
  /** `Deno.env`, to tell which default roots the process loaded. */
  env?: { get(name: string): string | undefined };
  /** `Deno.permissions`, to read the environment only where allowed. */
  permissions?: { querySync?(d: { name: "env"; variable: string }): { state: string } };
}

/**
 * Tells whether `runtime` (by default this `Deno`) offers what the native leg needs:
 * `connectTls` and the internal peer-certificate accessor; the SNI symbol is optional.
 *
 * @example
 * ```ts
 * import { detectNativeTls } from "./native_tls.ts";
 * const support = detectNativeTls();
 * console.log(support.available ? support.tlsLayerRoots : support.reason);
 * ```
 */
export function detectNativeTls(
  runtime: NativeTlsRuntime = Deno as unknown as NativeTlsRuntime,
): NativeTlsSupport {
  if (typeof runtime.connectTls !== "function") {
    return { available: false, reason: "Deno.connectTls is not available" };
  }
  const key = runtime.internal;
  const internal = (typeof key === "symbol" || typeof key === "string")
    ? (runtime as Record<string | symbol, unknown>)[key] as Record<string, unknown> | undefined
    : undefined;
  const peerCertificate = internal?.getPeerCertificate;
  if (typeof peerCertificate !== "symbol") {
    return {
      available: false,
      reason: "this runtime has no peer-certificate accessor (Deno[Deno.internal]." +
        "getPeerCertificate)",
    };
  }
  const serverName = internal?.serverNameSymbol;
  return {
    available: true,
    connectTls: runtime.connectTls as typeof Deno.connectTls,
    peerCertificate,
    serverName: typeof serverName === "symbol" ? serverName : undefined,
    tlsLayerRoots: tlsLayerRoots(runtime),
  };
}

/**
 * `DENO_TLS_CA_STORE`, `DENO_CERT` and `NODE_EXTRA_CA_CERTS` decide the default store a native
 * dial adds the mesh roots to (`get_root_cert_store` in Deno's `cli/lib/args.rs`): an empty
 * `DENO_TLS_CA_STORE` loads no public roots. `--cert` cannot be seen from here.
 */
function tlsLayerRoots(runtime: NativeTlsRuntime): NativeTlsLayerRoots {
  const names = ["DENO_TLS_CA_STORE", "DENO_CERT", "NODE_EXTRA_CA_CERTS"];
  const env = runtime.env;
  const query = runtime.permissions?.querySync;
  if (!env || !query) return "unknown";
  const values: (string | undefined)[] = [];
  for (const variable of names) {
    try {
      if (query.call(runtime.permissions, { name: "env", variable }).state !== "granted") {
        return "unknown";
      }
      values.push(env.get(variable));
    } catch {
      return "unknown";
    }
  }
  const [stores, denoCert, extra] = values;
  const noStores = stores !== undefined && stores.split(",").every((s) => s.trim() === "");
  return noStores && !denoCert && !extra ? "mesh-only" : "mesh-and-default";
}

let detected: NativeTlsSupport | undefined;

/**
 * This runtime's {@linkcode NativeTlsSupport}, detected once.
 *
 * @example
 * ```ts
 * import { nativeTlsSupport } from "./native_tls.ts";
 * if (!nativeTlsSupport().available) console.log("upstreams dial with node:tls");
 * ```
 */
export function nativeTlsSupport(): NativeTlsSupport {
  return detected ??= detectNativeTls();
}

/** A verified native mesh connection. */
export interface NativeMeshConnection {
  /** The connection; nothing has been read from it or written to it yet. */
  conn: Deno.TlsConn;
  /** The server's SPIFFE ID. */
  peer: string;
}

/** The outcome of {@linkcode dialMeshNative}. */
export type NativeDialResult =
  | { ok: true; connection: NativeMeshConnection }
  | {
    ok: false;
    /** Failed for good: the `node:tls` leg would fail the same way. */
    failure: DialFailure;
    fallback?: undefined;
  }
  | {
    ok: false;
    /**
     * The native leg cannot decide: dial this endpoint with `node:tls` instead. Says why (no
     * accessor in this runtime, or a chain our check needs the presented intermediates for).
     */
    fallback: string;
    /** What the native leg saw, when it got as far as a failure. */
    failure?: DialFailure;
  };

/** Options of {@linkcode dialMeshNative}. */
export interface NativeDialOptions {
  /** Longest time for TCP connect plus TLS handshake. */
  timeoutMs: number;
  /** The SNI to send (the chain target's `SNI`); without it, the dialled host's name, if any. */
  sni?: string;
  /** Gives up early (the client went away). */
  signal?: AbortSignal;
  /** The runtime's support, for tests. @default {nativeTlsSupport()} */
  support?: NativeTlsSupport;
}

/** What a dial gave when it was done with: closed even if it arrives after a timeout. */
function closeQuietly(conn: Deno.Conn | undefined): void {
  try {
    conn?.close();
  } catch {
    // already closed
  }
}

/**
 * Settles like `promise`, or rejects with the signal's reason when it aborts first; `onLate`
 * then receives what `promise` resolves to, so nothing it opens is left behind.
 */
function within<T>(promise: Promise<T>, signal: AbortSignal, onLate: (v: T) => void): Promise<T> {
  const late = () => void promise.then(onLate, () => {});
  if (signal.aborted) {
    late();
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      late();
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

/** The leaf DER a verified handshake presented, or undefined when the accessor gives none. */
function peerLeaf(conn: Deno.TlsConn, accessor: symbol): Uint8Array | undefined {
  try {
    const read = (conn as unknown as Record<symbol, (detailed: boolean) => unknown>)[accessor];
    const cert = typeof read === "function" ? read.call(conn, false) : undefined;
    const raw = (cert as { raw?: unknown } | undefined)?.raw;
    return raw instanceof Uint8Array && raw.length > 0 ? raw : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Dials `endpoint` with `Deno.connectTls` and verifies it as {@linkcode dialMesh} does: chain
 * to the mesh roots (our code, `serverAuth`), then the SPIFFE identity of `endpoint.service`
 * (and datacenter, when known) in namespace `default`. Resolves with the connection, with a
 * failure, or with a request to use the `node:tls` leg (see {@linkcode NativeDialResult}).
 *
 * @example
 * ```ts
 * import type { TlsMaterial } from "@meshgate/meshgate";
 * import { dialMeshNative } from "./native_tls.ts";
 *
 * async function hello(material: TlsMaterial): Promise<void> {
 *   const db = { address: "10.0.0.7", port: 21000, service: "db", id: "db-1" };
 *   const r = await dialMeshNative(material, db, { timeoutMs: 5000 });
 *   if (r.ok) await r.connection.conn.write(new TextEncoder().encode("hello"));
 *   else if (r.fallback !== undefined) console.log(`dial with node:tls instead: ${r.fallback}`);
 *   else console.log(r.failure.reason, r.failure.detail);
 * }
 * ```
 */
export async function dialMeshNative(
  material: TlsMaterial,
  endpoint: MeshEndpoint,
  options: NativeDialOptions,
): Promise<NativeDialResult> {
  const support = options.support ?? nativeTlsSupport();
  if (!support.available) return { ok: false, fallback: support.reason };
  if (options.sni && !support.serverName) {
    return { ok: false, fallback: "this runtime cannot set the SNI of Deno.connectTls" };
  }
  await material.ready;
  const where = `${endpoint.address}:${endpoint.port}`;
  const fail = (reason: DialFailureReason, detail: string) => ({
    ok: false as const,
    failure: { reason, detail: `${where}: ${detail}` },
  });
  const leaf = material.leaf!.cert;
  const dialOptions: Deno.ConnectTlsOptions & Deno.TlsCertifiedKeyPem & Record<symbol, string> = {
    hostname: endpoint.address,
    port: endpoint.port,
    cert: leaf.CertPEM,
    key: leaf.PrivateKeyPEM,
    // Added to the runtime's default store (see the module doc); our check below is what
    // admits a server, against these roots only.
    caCerts: material.roots!.pems,
    // Identity is the SPIFFE URI, checked below; there is no hostname to check.
    unsafelyDisableHostnameVerification: true,
  };
  if (options.sni) dialOptions[support.serverName!] = options.sni;

  const limit = deadline(options.timeoutMs, options.signal);
  let conn: Deno.TlsConn | undefined;
  try {
    conn = await within(support.connectTls(dialOptions), limit.signal, closeQuietly);
    const open = conn;
    await within(open.handshake(), limit.signal, () => {});
  } catch (err) {
    closeQuietly(conn);
    if (limit.timedOut()) {
      return fail("connect", `timed out after ${options.timeoutMs} ms`);
    }
    if (options.signal?.aborted) return fail("connect", "dial cancelled");
    const message = (err as Error)?.message ?? String(err);
    // rustls' verifier: "invalid peer certificate: UnknownIssuer", "…: Expired", …
    return /invalid peer certificate/i.test(message)
      ? fail(
        "bad_chain",
        `server certificate refused by the TLS layer against the mesh roots (${message})`,
      )
      : fail("connect", message);
  } finally {
    limit.clear();
  }

  const der = peerLeaf(conn, support.peerCertificate);
  if (!der) {
    // rustls never completes a handshake without a server certificate: the accessor failed.
    closeQuietly(conn);
    return { ok: false, fallback: "the peer-certificate accessor returned no certificate" };
  }
  const verdict = await material.verifyPeer(der, [], "serverAuth");
  if (!verdict.ok) {
    closeQuietly(conn);
    const { failure } = fail(verdict.reason, verdict.detail);
    // Only the leaf is visible here: a path through intermediates the server presented but the
    // roots do not list can only be judged by the node:tls leg.
    return verdict.reason === "bad_chain"
      ? { ok: false, fallback: "the server's presented chain is needed to decide", failure }
      : { ok: false, failure };
  }
  const id = verdict.id;
  const sameService = id.service.toLowerCase() === endpoint.service.toLowerCase();
  const sameDc = !endpoint.datacenter || id.datacenter === endpoint.datacenter;
  if (!sameService || !sameDc || id.namespace !== "default") {
    closeQuietly(conn);
    return fail(
      "bad_identity",
      `peer certificate mismatch got ${verdict.uri}, want service ${endpoint.service}` +
        (endpoint.datacenter ? ` in ${endpoint.datacenter}` : ""),
    );
  }
  return { ok: true, connection: { conn, peer: verdict.uri } };
}
