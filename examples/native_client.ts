/**
 * A Connect-native client: `web` places an order with the `api` service through `svc.fetch`,
 * over verified mTLS to a healthy instance, then lists the orders.
 *
 *     deno run --allow-net --allow-env=CONSUL_HTTP_ADDR examples/native_client.ts                # as web: 201, then the list
 *     deno run --allow-net --allow-env=CONSUL_HTTP_ADDR examples/native_client.ts --as billing   # another identity: POST is 403
 *     deno run --allow-net --allow-env=CONSUL_HTTP_ADDR examples/native_client.ts --get http://legacy.service.consul/
 * @module
 */
import { connect } from "@meshgate/meshgate";

const args = [...Deno.args];
const flag = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
await using svc = await connect({ service: flag("--as") ?? "web" });
console.log(`calling as ${svc.spiffeId}`);

const url = flag("--get");
if (url) {
  const res = await svc.fetch(url);
  console.log(`GET ${url} → ${res.status} ${await res.text()}`);
} else {
  const created = await svc.fetch("http://api.service.consul/orders", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ item: "green tea" }),
  });
  console.log(`POST /orders → ${created.status} ${await created.text()}`);
  const list = await svc.fetch("http://api.service.consul/orders");
  console.log(`GET /orders → ${list.status} ${await list.text()}`);
}
