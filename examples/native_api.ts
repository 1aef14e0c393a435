/**
 * A Connect-native hono API: the `api` service serves mTLS itself (no sidecar), every caller is
 * verified and authorized by the agent, and `POST /orders` is only for `web`.
 *
 *     deno task dev-agent &                      # or a real Consul agent
 *     deno run --allow-net --allow-env=CONSUL_HTTP_ADDR,PORT examples/native_api.ts         # CONSUL_HTTP_ADDR picks the agent
 *
 * Then call it with examples/native_client.ts.
 * @module
 */
import { Hono } from "hono";
import { connect } from "@meshgate/meshgate";
import { allowCallers, callerOf } from "@meshgate/meshgate/native";

const svc = await connect({ service: "api" });
const orders: { item: string; by: string }[] = [];

const app = new Hono();
app.get("/orders", (c) => c.json({ orders, caller: callerOf(c)?.id.service }));
app.post("/orders", allowCallers("web"), async (c) => {
  const { item } = await c.req.json<{ item?: string }>();
  if (!item) return c.json({ error: "item is required" }, 400);
  const order = { item, by: callerOf(c)!.id.service };
  orders.push(order);
  return c.json(order, 201);
});

const server = await svc.serve(app.fetch, {
  hostname: "127.0.0.1",
  port: Number(Deno.env.get("PORT") ?? 0),
});
// Register the instance as Connect-native, so clients find it through /v1/health/connect/api.
await svc.agent.register({
  ID: "api-native",
  Name: "api",
  Address: server.address.hostname,
  Port: server.address.port,
  Connect: { Native: true },
  Check: {
    Name: "mTLS port",
    TCP: `${server.address.hostname}:${server.address.port}`,
    Interval: "10s",
  },
});
console.log(
  `api (Connect-native) listening on ${server.address.hostname}:${server.address.port} as ${svc.spiffeId}`,
);

const stop = async () => {
  await svc.agent.deregister("api-native").catch(() => {});
  await server.close(1000);
  await svc.close();
  Deno.exit(0);
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
