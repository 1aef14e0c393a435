// A two-sidecar mesh on the test double: web (upstream "db" on a local port) → db (echo app).
import type { ConnectionEvent } from "../../src/events/connection.ts";
import type { Logger } from "../../src/net/log.ts";
import { type ProxyLimits, startProxy } from "../../src/proxy/proxy.ts";
import { clientFor, devAgent, eventually, freePort } from "../_helpers.ts";
import { echoServer } from "./_net.ts";

/** Options of {@linkcode mesh}. */
export interface MeshOptions {
  /** Leaf lifetime of the double (leaves are backdated a minute, as Consul's). */
  leafTtlMs?: number;
  /** Limits of db's sidecar. */
  dbLimits?: ProxyLimits;
  /** Limits of web's sidecar (e.g. `outboundTls`). */
  webLimits?: ProxyLimits;
  /** Log sink of web's sidecar. */
  webLog?: Logger;
  /** db's application port, instead of the echo app (which still runs, as `db`). */
  appPort?: number;
}

/** Starts the double, db's echo app, and both sidecars; disposes of all of it. */
export async function mesh(opts: MeshOptions = {}) {
  const dev = await devAgent({ leafTtlMs: opts.leafTtlMs });
  const agent = clientFor(dev);
  const db = await echoServer();
  const dbPublic = freePort();
  const webPublic = freePort();
  const upstreamPort = freePort();
  await agent.register({
    ID: "db-1",
    Name: "db",
    Port: opts.appPort ?? db.port,
    Connect: { SidecarService: { Port: dbPublic } },
  });
  /** web's registration, optionally with more upstreams (a live config change). */
  const webRegistration = (extra: { DestinationName: string; LocalBindPort: number }[] = []) => ({
    ID: "web-1",
    Name: "web",
    Port: 1,
    Connect: {
      SidecarService: {
        Port: webPublic,
        Proxy: {
          Upstreams: [{ DestinationName: "db", LocalBindPort: upstreamPort }, ...extra],
        },
      },
    },
  });
  await agent.register(webRegistration());
  const events: ConnectionEvent[] = [];
  const dbProxy = await startProxy({
    agent,
    sidecarFor: "db-1",
    limits: opts.dbLimits,
    onEvent: (e) => events.push(e),
  });
  const webProxy = await startProxy({
    agent,
    sidecarFor: "web-1",
    limits: opts.webLimits,
    log: opts.webLog,
    onEvent: (e) => events.push(e),
  });
  await Promise.all([dbProxy.ready, webProxy.ready]);
  // The db sidecar is a healthy endpoint once its TCP check passes.
  await eventually(async () =>
    (await agent.healthConnect("db", { passing: true })).value.length === 1
  );
  // …and web's upstream has seen it (its first endpoint list may predate the passing check).
  await eventually(() =>
    webProxy.upstreams[0]?.resolver?.targets.get("db.default.default.dc1")?.endpoints.length === 1
  );
  return {
    dev,
    agent,
    db,
    dbProxy,
    webProxy,
    upstreamPort,
    events,
    webRegistration,
    async [Symbol.asyncDispose]() {
      await webProxy.close();
      await dbProxy.close();
      await db.close();
      await agent.close();
      await dev.close();
    },
  };
}
