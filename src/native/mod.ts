/**
 * Connect-native services for Deno: no sidecar. {@linkcode connect} gives a
 * {@linkcode ConnectService} that keeps its leaf certificate and the mesh roots current (blocking
 * queries), serves HTTP or raw TCP over mTLS with every caller verified and authorized by the
 * agent, and reaches upstreams by name — `fetch("http://api.service.consul/…")` or `dial("db")` —
 * over mTLS that checks the server's SPIFFE identity. {@linkcode allowCallers} and
 * {@linkcode callerOf} bring the caller's identity into a hono app.
 *
 * @example
 * ```ts
 * import { AgentClient } from "@meshgate/meshgate/agent";
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 * import { connect } from "@meshgate/meshgate/native";
 *
 * await using dev = await startDevAgent(); // the Consul test double; any agent will do
 * await using agent = new AgentClient({ address: dev.address }); // default: CONSUL_HTTP_ADDR…
 * await using api = await connect({ service: "api", agent });
 * await using server = await api.serve(
 *   (_req, { caller }) => new Response(`hello ${caller.id.service}`),
 *   { hostname: "127.0.0.1", port: 0 },
 * );
 * await agent.register({
 *   ID: "api-1",
 *   Name: "api",
 *   Address: "127.0.0.1",
 *   Port: server.address.port,
 *   Connect: { Native: true },
 * });
 * await using web = await connect({ service: "web", agent });
 * const res = await web.fetch("http://api.service.consul/hello");
 * console.log(res.status, await res.text()); // 200 hello web
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
