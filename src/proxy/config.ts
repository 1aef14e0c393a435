/**
 * The proxy's configuration: what a `connect-proxy` registration (or the `-service` flags)
 * says, reduced to what the data plane needs, and validated with errors that name the field.
 * @module
 */
import type { AgentService } from "../agent/types.ts";
import type { SocketAddress } from "../net/sockets.ts";
import type { LoadBalancingPolicy } from "../outbound/connector.ts";
import type { UpstreamConfig } from "../outbound/listener.ts";

/** What the proxy runs. */
export interface ProxyConfig {
  /** The proxy's service ID, when registered. */
  proxyId?: string;
  /** The service we front: leaf name and authorize target. */
  service: string;
  /** The public mTLS listener; absent for a client-only proxy. */
  publicListener?: { hostname: string; port: number };
  /** The local application. */
  app?: SocketAddress;
  /** Upstream listeners. */
  upstreams: UpstreamConfig[];
  /** `local_connect_timeout_ms`. */
  localConnectTimeoutMs?: number;
  /** `handshake_timeout_ms`. */
  handshakeTimeoutMs?: number;
}

/**
 * The registration is not a usable proxy configuration.
 *
 * @example
 * ```ts
 * import { ProxyConfigError } from "@meshgate/meshgate";
 * console.log(new ProxyConfigError("Proxy.DestinationServiceName", "is empty").message);
 * ```
 */
export class ProxyConfigError extends Error {
  /**
   * Creates the error.
   * @param field the field at fault
   * @param detail what is wrong
   */
  constructor(field: string, detail: string) {
    super(`${field}: ${detail}`);
    this.name = "ProxyConfigError";
    this.field = field;
  }
  /** The field at fault. */
  readonly field: string;
}

function positiveMs(
  config: Record<string, unknown> | undefined,
  key: string,
  field = `Config.${key}`,
): number | undefined {
  const v = config?.[key];
  if (v === undefined || v === null) return undefined;
  // Consul's JSON numbers decode as float64; its built-in proxy then ignores them (§5.2). We
  // accept numbers and numeric strings.
  const n = typeof v === "string" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isFinite(n) || n <= 0) {
    throw new ProxyConfigError(
      field,
      `must be a positive number of milliseconds, got ${JSON.stringify(v)}`,
    );
  }
  return n;
}

/** A TCP port: a whole number 1-65535 (Consul itself accepts any integer in a registration). */
function isPort(n: number | undefined): n is number {
  return Number.isInteger(n) && n! > 0 && n! < 65536;
}

/** `n` when it is a port, `undefined` when unset or 0, else a ProxyConfigError naming `field`. */
function optionalPort(n: number | undefined, field: string): number | undefined {
  if (n === undefined || n === 0) return undefined;
  if (!isPort(n)) throw new ProxyConfigError(field, `must be 1-65535, got ${n}`);
  return n;
}

/** Maps a `connect-proxy` registration to the proxy's configuration. */
export function configFromService(svc: AgentService): ProxyConfig {
  if (svc.Kind !== "connect-proxy") {
    throw new ProxyConfigError(
      "Kind",
      `service ${svc.ID} is not a connect-proxy (Kind ${JSON.stringify(svc.Kind ?? "")})`,
    );
  }
  const p = svc.Proxy;
  if (!p?.DestinationServiceName) {
    throw new ProxyConfigError("Proxy.DestinationServiceName", `is empty on ${svc.ID}`);
  }
  const upstreams: UpstreamConfig[] = [];
  for (const [i, u] of (p.Upstreams ?? []).entries()) {
    const field = `Proxy.Upstreams[${i}]`;
    const type = (u.DestinationType || "service") as UpstreamConfig["type"];
    if (type !== "service" && type !== "prepared_query") {
      throw new ProxyConfigError(
        `${field}.DestinationType`,
        `unknown type ${JSON.stringify(type)}`,
      );
    }
    let bind: SocketAddress;
    if (u.LocalBindSocketPath) bind = { path: u.LocalBindSocketPath };
    else if (isPort(u.LocalBindPort)) {
      bind = { hostname: u.LocalBindAddress || "127.0.0.1", port: u.LocalBindPort };
    } else {
      throw new ProxyConfigError(
        `${field}.LocalBindPort`,
        `must be 1-65535, got ${u.LocalBindPort}`,
      );
    }
    let socketMode: number | undefined;
    if (u.LocalBindSocketPath && u.LocalBindSocketMode) {
      // Consul takes the mode as an octal string ("0700").
      if (!/^0?[0-7]{3}$/.test(u.LocalBindSocketMode)) {
        throw new ProxyConfigError(
          `${field}.LocalBindSocketMode`,
          `must be an octal file mode like "0700", got ${JSON.stringify(u.LocalBindSocketMode)}`,
        );
      }
      socketMode = parseInt(u.LocalBindSocketMode, 8);
    }
    const lb = u.Config?.lb_policy;
    if (lb !== undefined && lb !== "round_robin" && lb !== "least_connections") {
      throw new ProxyConfigError(
        `${field}.Config.lb_policy`,
        `must be "round_robin" or "least_connections", got ${JSON.stringify(lb)}`,
      );
    }
    upstreams.push({
      type,
      name: u.DestinationName,
      datacenter: u.Datacenter || undefined,
      bind,
      connectTimeoutMs: positiveMs(
        u.Config,
        "connect_timeout_ms",
        `${field}.Config.connect_timeout_ms`,
      ),
      ...(socketMode !== undefined ? { socketMode } : {}),
      ...(lb ? { policy: lb as LoadBalancingPolicy } : {}),
    });
  }
  let app: SocketAddress | undefined;
  const appPort = optionalPort(p.LocalServicePort, "Proxy.LocalServicePort");
  if (p.LocalServiceSocketPath) app = { path: p.LocalServiceSocketPath };
  else if (appPort) app = { hostname: p.LocalServiceAddress || "127.0.0.1", port: appPort };
  const port = optionalPort(svc.Port, "Port");
  return {
    proxyId: svc.ID,
    service: p.DestinationServiceName,
    publicListener: port ? { hostname: svc.Address || "0.0.0.0", port } : undefined,
    app,
    upstreams,
    localConnectTimeoutMs: positiveMs(p.Config, "local_connect_timeout_ms"),
    handshakeTimeoutMs: positiveMs(p.Config, "handshake_timeout_ms"),
  };
}

/** A stable key for an upstream: a change of any field means a new listener. */
export function upstreamKey(u: UpstreamConfig): string {
  return JSON.stringify([
    u.type,
    u.name,
    u.datacenter ?? "",
    u.bind,
    u.connectTimeoutMs ?? 0,
    u.socketMode ?? 0,
    u.policy ?? "",
  ]);
}
