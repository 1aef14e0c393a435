/**
 * Mesh addresses in URLs, in Consul's DNS form: `<service>.service[.<datacenter>].consul` for a
 * service (through its discovery chain) and `<query>.query[.<datacenter>].consul` for a prepared
 * query. The port of such a URL is ignored: the mesh decides where it goes.
 * @module
 */
import type { UpstreamTarget } from "../outbound/connector.ts";

/**
 * A host name that does not name a mesh upstream.
 *
 * @example
 * ```ts
 * import { MeshAddressError, parseMeshHost } from "@meshgate/meshgate/native";
 * try {
 *   parseMeshHost("example.com");
 * } catch (err) {
 *   console.log(err instanceof MeshAddressError); // true
 * }
 * ```
 */
export class MeshAddressError extends TypeError {
  /**
   * Creates the error.
   * @param host the host name given
   */
  constructor(host: string) {
    super(
      `"${host}" is not a mesh address: use <service>.service[.<dc>].consul or ` +
        `<query>.query[.<dc>].consul`,
    );
    this.name = "MeshAddressError";
  }
}

const LABEL = /^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$/;

/**
 * Parses a mesh host name.
 *
 * @example
 * ```ts
 * import { parseMeshHost } from "@meshgate/meshgate/native";
 * console.log(parseMeshHost("api.service.consul")); // { type: "service", name: "api" }
 * console.log(parseMeshHost("db.service.dc2.consul").datacenter); // "dc2"
 * ```
 * @throws {MeshAddressError} when `host` is not in one of the mesh forms
 */
export function parseMeshHost(host: string): UpstreamTarget {
  const parts = host.toLowerCase().replace(/\.$/, "").split(".");
  const kind = parts[1];
  if (
    (parts.length !== 4 && parts.length !== 3) || parts.at(-1) !== "consul" ||
    (kind !== "service" && kind !== "query") || !parts.slice(0, -1).every((p) => LABEL.test(p))
  ) {
    throw new MeshAddressError(host);
  }
  return {
    type: kind === "service" ? "service" : "prepared_query",
    name: parts[0]!, // three or four labels (checked above)
    ...(parts.length === 4 ? { datacenter: parts[2] } : {}),
  };
}
