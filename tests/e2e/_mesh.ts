// A two-sidecar mesh on the test double: web (upstream "db" on a local port) → db (echo app).
import { type ConnectionEvent, startProxy } from "../../mod.ts";
import { clientFor, devAgent, eventually, freePort } from "../_helpers.ts";
import { echoServer } from "./_net.ts";

/** Starts the double, db's echo app, and both sidecars; disposes of all of it. */
export async function mesh() {
  const dev = await devAgent();
  const agent = clientFor(dev);
  const db = await echoServer();
  const dbPublic = freePort();
  const webPublic = freePort();
  const upstreamPort = freePort();
  await agent.register({
    ID: "db-1",
    Name: "db",
    Port: db.port,
    Connect: { SidecarService: { Port: dbPublic } },
  });
  await agent.register({
    ID: "web-1",
    Name: "web",
    Port: 1,
    Connect: {
      SidecarService: {
        Port: webPublic,
        Proxy: { Upstreams: [{ DestinationName: "db", LocalBindPort: upstreamPort }] },
      },
    },
  });
  const events: ConnectionEvent[] = [];
  const dbProxy = await startProxy({ agent, sidecarFor: "db-1", onEvent: (e) => events.push(e) });
  const webProxy = await startProxy({ agent, sidecarFor: "web-1", onEvent: (e) => events.push(e) });
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
    async [Symbol.asyncDispose]() {
      await webProxy.close();
      await dbProxy.close();
      await db.close();
      await agent.close();
      await dev.close();
    },
  };
}
