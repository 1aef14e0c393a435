/**
 * Connect-native services for Deno: no sidecar. {@linkcode connect} gives a
 * {@linkcode ConnectService} that keeps its leaf certificate and the mesh roots current (blocking
 * queries), serves HTTP or raw TCP over mTLS with every caller verified and authorized by the
 * agent, and reaches upstreams by name — `fetch("http://api.service.consul/…")` or `dial("db")` —
 * over mTLS that checks the server's SPIFFE identity. {@linkcode allowCallers} and
 * {@linkcode callerOf} bring the caller's identity into a hono app.
 *
 * @example
 * ```ts ignore
 * // Needs a Consul agent (CONSUL_HTTP_ADDR) with Connect enabled.
 * import { connect } from "@meshgate/meshgate/native";
 *
 * await using api = await connect({ service: "api" });
 * await api.serve((_req, { caller }) => new Response(`hello ${caller.id.service}`), { port: 8443 });
 * const orders = await api.fetch("http://orders.service.consul/recent");
 * console.log(orders.status);
 * ```
 * @module
 */

export {
  connect,
  type ConnectOptions,
  ConnectService,
  type MeshListener,
  type MeshServer,
  type ServeOptions,
} from "./service.ts";
export type { MeshHandler, MeshRequestInfo } from "./http_server.ts";
export { allowCallers, callerOf, type MeshContext, type MeshMiddleware } from "./hono.ts";
export { MeshAddressError, parseMeshHost } from "./names.ts";
export type { AuthorizedConnection, Caller } from "../inbound/gateway.ts";
export {
  UpstreamConnectError,
  type UpstreamConnectReason,
  type UpstreamTarget,
} from "../outbound/connector.ts";
