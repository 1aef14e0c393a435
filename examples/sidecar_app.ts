/**
 * For contrast: a plain HTTP app that knows nothing about the mesh, behind a meshgate sidecar.
 * The app listens on loopback only; the sidecar serves mTLS, checks the caller and authorizes it
 * before any byte reaches the app. (In production the sidecar is its own process:
 * `deno task proxy -sidecar-for legacy-1`; here both run in one process for a one-line demo.)
 *
 *     deno run --allow-net --allow-env=CONSUL_HTTP_ADDR,SIDECAR_PORT examples/sidecar_app.ts
 *     deno run --allow-net --allow-env=CONSUL_HTTP_ADDR examples/native_client.ts --get http://legacy.service.consul/
 * @module
 */
import { createDenoAgentClient, startProxy } from "@meshgate/meshgate";

// The application: plain HTTP on loopback. It cannot tell who calls; the sidecar can.
const app = Deno.serve(
  { hostname: "127.0.0.1", port: 0, onListen: () => {} },
  () => new Response("hello from a plain app behind a meshgate sidecar\n"),
);
const agent = await createDenoAgentClient();
const sidecarPort = Number(Deno.env.get("SIDECAR_PORT") ?? 0) || freePort();
await agent.register({
  ID: "legacy-1",
  Name: "legacy",
  Port: app.addr.port,
  Connect: { SidecarService: { Port: sidecarPort } },
});
const proxy = await startProxy({ agent, sidecarFor: "legacy-1" });
await proxy.ready;
console.log(`legacy app on 127.0.0.1:${app.addr.port}, its meshgate sidecar on :${sidecarPort}`);

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

const stop = async () => {
  await proxy.close(1000);
  await agent.deregister("legacy-1").catch(() => {});
  await app.shutdown();
  await agent.close();
  Deno.exit(0);
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
