/**
 * Small socket helpers shared by the inbound and outbound paths: dialing a plain TCP or unix
 * socket with a timeout, and reading a peer's presented certificate chain.
 * @module
 */
import net from "node:net";
import type tls from "node:tls";
import { deadline } from "./timers.ts";

/** Where a plain (non-mesh) socket goes: TCP host and port, or a unix socket path. */
export type SocketAddress = { hostname: string; port: number } | { path: string };

/** Formats an address for logs. */
export function formatAddress(a: SocketAddress): string {
  return "path" in a
    ? `unix:${a.path}`
    : `${a.hostname.includes(":") ? `[${a.hostname}]` : a.hostname}:${a.port}`;
}

/**
 * Connects a plain socket, failing after `timeoutMs` or when `signal` aborts. The socket allows
 * half-open so that a pipe can pass one direction's end on while the other keeps flowing.
 */
export function connectPlain(
  address: SocketAddress,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({
      ...("path" in address
        ? { path: address.path }
        : { host: address.hostname, port: address.port }),
      allowHalfOpen: true,
      noDelay: true,
    });
    const timer = deadline(timeoutMs, signal);
    const done = () => {
      timer.clear();
      timer.signal.removeEventListener("abort", onAbort);
    };
    const onAbort = () => {
      done();
      socket.destroy();
      const why = timer.timedOut() ? `timed out after ${timeoutMs} ms` : "aborted";
      reject(new Error(`connect ${formatAddress(address)}: ${why}`));
    };
    if (timer.signal.aborted) return onAbort();
    timer.signal.addEventListener("abort", onAbort, { once: true });
    socket.once("connect", () => {
      done();
      socket.removeAllListeners("error");
      resolve(socket);
    });
    socket.once("error", (err) => {
      done();
      socket.destroy();
      reject(new Error(`connect ${formatAddress(address)}: ${err.message}`));
    });
  });
}

/**
 * The DER of a TLS peer's certificate and of the chain it presented (leaf first).
 *
 * Reads the raw chain from Deno's TLS handle when it offers one: `getPeerCertificate(true)`
 * builds a legacy object for every certificate and re-parses every CA certificate of the
 * context to complete the chain, which measured 6–7 % of a proxy's CPU per new connection.
 * Other runtimes fall back to it.
 */
export function peerChain(socket: tls.TLSSocket): { der?: Uint8Array; chain: Uint8Array[] } {
  const raw = (socket as unknown as {
    _handle?: { getPeerCertificateChain?: () => { certificates?: unknown } | undefined };
  })._handle?.getPeerCertificateChain?.()?.certificates;
  if (Array.isArray(raw) && raw.every((c) => c instanceof Uint8Array)) {
    const der = raw[0];
    if (der === undefined || der.length === 0) return { chain: [] };
    return { der, chain: raw.slice(1, 9) };
  }
  return legacyPeerChain(socket);
}

function legacyPeerChain(socket: tls.TLSSocket): { der?: Uint8Array; chain: Uint8Array[] } {
  const cert = socket.getPeerCertificate(true) as tls.DetailedPeerCertificate | undefined;
  if (!cert || !cert.raw || cert.raw.length === 0) return { chain: [] };
  const chain: Uint8Array[] = [];
  let next = cert.issuerCertificate;
  const seen = new Set<tls.DetailedPeerCertificate>([cert]);
  while (next && !seen.has(next) && next.raw?.length && chain.length < 8) {
    chain.push(new Uint8Array(next.raw));
    seen.add(next);
    next = next.issuerCertificate;
  }
  return { der: new Uint8Array(cert.raw), chain };
}
