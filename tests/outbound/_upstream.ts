// Fixtures of the outbound tests: the double (every TCP check passing) with db instances that are
// our own TLS servers on loopback, presenting certificates from the double's CA — or a forger's,
// or another service's — and our side's material (web's leaf and the mesh roots).
import type net from "node:net";
import tls from "node:tls";
import type { AgentClient } from "../../src/agent/client.ts";
import type { ConnectCA } from "../../src/devagent/ca.ts";
import type { RunningDevAgent } from "../../src/devagent/server.ts";
import type { ConnectionEvent } from "../../src/events/connection.ts";
import { UpstreamConnector, type UpstreamConnectorOptions } from "../../src/outbound/connector.ts";
import { TlsMaterial } from "../../src/trust/material.ts";
import { clientFor, devAgent, eventually } from "../_helpers.ts";

/** A certificate and its key, as a TLS server presents them. */
export interface ServerIdentity {
  cert: string;
  key: string;
}

/** A certificate of `ca` for `service` (our CA: the double's; a forger's: another one). */
export async function identityOf(ca: ConnectCA, service: string): Promise<ServerIdentity> {
  const leaf = await ca.signLeaf(service);
  return { cert: leaf.cert.CertPEM, key: leaf.cert.PrivateKeyPEM };
}

/** What a mesh server does with a connection once its handshake is done. */
export type Behaviour = (socket: tls.TLSSocket) => void;

/** Echoes what it reads. */
export const echo: Behaviour = (s) => s.pipe(s);

/** A TLS server on 127.0.0.1:0 that records handshakes and every byte it received. */
export interface MeshServer extends AsyncDisposable {
  port: number;
  /** Completed TLS handshakes. */
  handshakes(): number;
  /** TCP connections accepted (a handshake may never complete). */
  accepted(): number;
  /** Everything received, over all connections. */
  received(): string;
}

/** Starts a mesh server presenting `identity`, doing `behave` with each connection. */
export async function meshServer(
  identity: ServerIdentity,
  behave: Behaviour = echo,
): Promise<MeshServer> {
  let handshakes = 0;
  let accepted = 0;
  let received = "";
  const sockets = new Set<net.Socket>();
  const server = tls.createServer(
    { cert: identity.cert, key: identity.key, allowHalfOpen: true } as tls.TlsOptions,
    (s) => {
      handshakes++;
      s.on("data", (c: Uint8Array) => (received += new TextDecoder().decode(c)));
      behave(s);
    },
  );
  server.on("connection", (s: net.Socket) => {
    accepted++;
    sockets.add(s);
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
  });
  server.on("tlsClientError", () => {});
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    handshakes: () => handshakes,
    accepted: () => accepted,
    received: () => received,
    async [Symbol.asyncDispose]() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** The double, a client of it, and web's material (leaf and roots of the double's CA). */
export interface UpstreamWorld extends AsyncDisposable {
  dev: RunningDevAgent;
  agent: AgentClient;
  material: TlsMaterial;
  /** Registers db instance `id` whose sidecar is `port`, with its share of new connections. */
  registerDb(id: string, port: number, weight?: number): Promise<void>;
  /** A connector for db that has seen `instances` healthy endpoints; events go to `events`. */
  connector(
    instances: number,
    options?: Partial<UpstreamConnectorOptions>,
  ): Promise<{ connector: UpstreamConnector; events: ConnectionEvent[] }>;
}

/** Material for `service` from `ca`: its leaf and the CA's roots. */
export async function materialFrom(ca: ConnectCA, service = "web"): Promise<TlsMaterial> {
  const material = new TlsMaterial();
  await material.setRoots({
    ActiveRootID: ca.activeRoot.ID,
    TrustDomain: ca.trustDomain,
    Roots: ca.roots,
  });
  const leaf = (await ca.signLeaf(service)).cert;
  await material.setLeaf({ ...leaf, CreateIndex: 1, ModifyIndex: 1 });
  return material;
}

/** Starts the double with every TCP check passing. */
export async function upstreamWorld(): Promise<UpstreamWorld> {
  const dev = await devAgent({ probeTcp: () => Promise.resolve(true) });
  const agent = clientFor(dev);
  const material = await materialFrom(dev.ca);
  const connectors: UpstreamConnector[] = [];
  return {
    dev,
    agent,
    material,
    async registerDb(id, port, weight = 1) {
      await agent.register({
        ID: id,
        Name: "db",
        Port: 1,
        Connect: { SidecarService: { Port: port, Weights: { Passing: weight, Warning: 1 } } },
      });
    },
    async connector(instances, options = {}) {
      const events: ConnectionEvent[] = [];
      const connector = new UpstreamConnector({
        agent,
        material,
        upstream: { type: "service", name: "db", connectTimeoutMs: 2000 },
        onEvent: (e) => events.push(e),
        ...options,
      });
      connectors.push(connector);
      await eventually(
        () =>
          connector.resolver?.targets.get("db.default.default.dc1")?.endpoints.length ===
            instances,
        5000,
        `${instances} db endpoints`,
      );
      return { connector, events };
    },
    async [Symbol.asyncDispose]() {
      for (const c of connectors) await c.close();
      await agent.close();
      await dev.close();
    },
  };
}
