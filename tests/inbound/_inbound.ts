// Shared fixtures of the inbound tests: a mesh CA in process (no agent), db's material, callers'
// certificates, a scripted agent whose authorize answers the test gives, and an application that
// records every byte it receives.
import net from "node:net";
import type { AuthorizeResult, Intention } from "../../src/agent/types.ts";
import { ConnectCA } from "../../src/devagent/ca.ts";
import type { AuthorizeCacheOptions, AuthorizeCaller } from "../../src/inbound/authorize_cache.ts";
import { TlsMaterial } from "../../src/trust/material.ts";

export const CLUSTER = "11111111-2222-3333-4444-555555555555";
export const ALLOW: AuthorizeResult = { Authorized: true, Reason: "Matched L4 intention: allow" };
export const DENY: AuthorizeResult = {
  Authorized: false,
  Reason: "Default behavior configured by ACLs",
};

/** A web → db intention, as the intention-match watch delivers it. */
export function intention(action: "allow" | "deny", source = "web"): Intention {
  return {
    SourceNS: "default",
    SourceName: source,
    DestinationNS: "default",
    DestinationName: "db",
    SourceType: "consul",
    Action: action,
    Precedence: 9,
    CreateIndex: 1,
    ModifyIndex: 1,
  };
}

/** The mesh CA, db's material (the listener's side) and the roots' PEMs for clients. */
export async function mesh(ca?: ConnectCA) {
  ca ??= await ConnectCA.create({ clusterId: CLUSTER });
  const material = new TlsMaterial();
  await material.setRoots({
    ActiveRootID: ca.activeRoot.ID,
    TrustDomain: ca.trustDomain,
    Roots: ca.roots,
  });
  const leaf = (await ca.signLeaf("db")).cert;
  await material.setLeaf({ ...leaf, CreateIndex: 1, ModifyIndex: 1 });
  const roots = ca.roots.map((r) => r.RootCert);
  /** A client certificate for `service`, signed by this CA. */
  const client = async (service = "web") => {
    const { cert } = await ca.signLeaf(service);
    return { cert: cert.CertPEM, key: cert.PrivateKeyPEM, ca: roots, uri: cert.ServiceURI };
  };
  return { ca, material, roots, client };
}

/** An agent whose authorize calls wait until the test answers them, oldest first. */
export function heldAgent() {
  const calls: {
    caller: AuthorizeCaller;
    answer: PromiseWithResolvers<AuthorizeResult>;
  }[] = [];
  const asked: (() => void)[] = [];
  const ask: AuthorizeCacheOptions["ask"] = (caller, { signal }) => {
    const answer = Promise.withResolvers<AuthorizeResult>();
    signal.addEventListener("abort", () => answer.reject(signal.reason), { once: true });
    calls.push({ caller, answer });
    for (const wake of asked.splice(0)) wake();
    return answer.promise;
  };
  return {
    ask,
    calls,
    /** Resolves once `n` calls have been made in all; fails after `ms` without them. */
    async called(n: number, ms = 5000): Promise<void> {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${calls.length} authorize calls, not ${n}`)),
          ms,
        );
      });
      try {
        while (calls.length < n) {
          await Promise.race([new Promise<void>((r) => asked.push(r)), late]);
        }
      } finally {
        clearTimeout(timer);
      }
    },
    /** Answers call `i` (the last by default). */
    answer(result: AuthorizeResult | Error, i = calls.length - 1) {
      const call = calls.at(i);
      if (!call) throw new Error(`no authorize call ${i}`);
      if (result instanceof Error) call.answer.reject(result);
      else call.answer.resolve(result);
    },
  };
}

/** A local application on 127.0.0.1:0 that echoes and records what it receives. */
export async function recordingApp() {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  let received = "";
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    connections++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {});
    s.on("data", (c: Uint8Array) => (received += new TextDecoder().decode(c)));
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    address: { hostname: "127.0.0.1", port: (server.address() as net.AddressInfo).port },
    /** Connections accepted so far. */
    connections: () => connections,
    /** Every byte received so far, as text. */
    received: () => received,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** A loopback port nothing listens on (it was bound a moment ago, then closed). */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}
