/**
 * `meshgate proxy` flags → options. Flags are spelled as `consul connect proxy` spells them
 * and accepted with one dash or two; every error names the flag.
 * @module
 */
import { type LogLevel, parseLogLevel } from "../net/log.ts";
import type { ProxyConfig } from "../proxy/config.ts";
import type { ProxyLimits } from "../proxy/proxy.ts";
import type { UpstreamConfig } from "../outbound/listener.ts";
import type { AgentConnectionOptions } from "../agent/config.ts";

/** What the command line asks for. */
export interface CliOptions {
  /** Print help and exit. */
  help: boolean;
  /** Agent connection settings from flags (environment fills the rest). */
  agent: AgentConnectionOptions;
  /** `-proxy-id`. */
  proxyId?: string;
  /** `-sidecar-for`. */
  sidecarFor?: string;
  /** Flag mode configuration (`-service`, `-listen`, `-service-addr`, `-upstream`). */
  config?: ProxyConfig;
  /** `-register` / `-register-id`. */
  register?: { id: string; name: string };
  /** Limits and timeouts. */
  limits: ProxyLimits;
  /** Drain deadline on shutdown. */
  drainMs: number;
  /** `-admin-bind`: where the admin app listens; absent when disabled (empty value). */
  admin?: { hostname: string; port: number };
  /** `-admin-token` (or `MESHGATE_ADMIN_TOKEN`): bearer token for `POST /v1/drain`. */
  adminToken?: string;
  /** `-access-log`: a file path, or `-` for stdout; absent when off. */
  accessLog?: string;
  /** `-access-log-sample`: fraction of connections logged. */
  accessLogSample: number;
  /** `-log-level`. */
  logLevel: LogLevel;
  /** `-log-json`. */
  logJson: boolean;
}

/** A bad flag. */
export class FlagError extends Error {
  /**
   * Creates the error.
   * @param flag the flag at fault, e.g. `-upstream`
   * @param detail what is wrong
   */
  constructor(flag: string, detail: string) {
    super(`${flag}: ${detail}`);
    this.name = "FlagError";
  }
}

interface FlagSpec {
  name: string;
  value?: string;
  help: string;
  default?: string;
}

/** Every flag, for parsing and for `-help`. */
export const FLAGS: FlagSpec[] = [
  {
    name: "sidecar-for",
    value: "id",
    help: "run the sidecar registered for this service instance ID (env CONNECT_SIDECAR_FOR)",
  },
  {
    name: "proxy-id",
    value: "id",
    help: "run the connect-proxy registration with this ID (env CONNECT_PROXY_ID)",
  },
  { name: "service", value: "name", help: "flag mode: the service this proxy represents" },
  {
    name: "listen",
    value: "host:port",
    help: "flag mode: public mTLS listener (none: client-only proxy)",
  },
  {
    name: "service-addr",
    value: "host:port",
    help: "flag mode: the local application (required with -listen)",
  },
  {
    name: "upstream",
    value: "name[.service|.query]:[host:]port",
    help: "flag mode: an upstream listener (repeatable)",
  },
  {
    name: "register",
    help: "flag mode: register this proxy with the agent and keep a TTL check passing",
  },
  {
    name: "register-id",
    value: "suffix",
    help: "suffix of the registered ID (<service>-proxy-<suffix>)",
  },
  {
    name: "http-addr",
    value: "addr",
    help: "agent address (env CONSUL_HTTP_ADDR)",
    default: "127.0.0.1:8500",
  },
  { name: "token", value: "token", help: "ACL token (env CONSUL_HTTP_TOKEN)" },
  {
    name: "token-file",
    value: "path",
    help: "file with the ACL token, wins over -token, re-read when it changes " +
      "(env CONSUL_HTTP_TOKEN_FILE)",
  },
  { name: "ca-file", value: "path", help: "CA bundle for the agent's HTTPS (env CONSUL_CACERT)" },
  {
    name: "client-cert",
    value: "path",
    help: "client certificate for the agent (env CONSUL_CLIENT_CERT)",
  },
  { name: "client-key", value: "path", help: "client key for the agent (env CONSUL_CLIENT_KEY)" },
  {
    name: "tls-server-name",
    value: "name",
    help: "server name to verify on the agent (env CONSUL_TLS_SERVER_NAME)",
  },
  {
    name: "handshake-timeout",
    value: "ms",
    help: "inbound TLS handshake timeout",
    default: "10000",
  },
  {
    name: "authorize-timeout",
    value: "ms",
    help: "authorize timeout (refuse after it)",
    default: "5000",
  },
  {
    name: "connect-timeout",
    value: "ms",
    help: "local application connect timeout",
    default: "1000",
  },
  {
    name: "idle-timeout",
    value: "ms",
    help: "close proxied connections idle this long (0: never)",
    default: "0",
  },
  {
    name: "max-inbound",
    value: "n",
    help: "most concurrent inbound connections (0: unlimited)",
    default: "0",
  },
  {
    name: "max-outbound",
    value: "n",
    help: "most concurrent connections per upstream (0: unlimited)",
    default: "0",
  },
  {
    name: "authorize-cache-ttl",
    value: "ms",
    help:
      "when the agent cannot answer authorize, use its answer for the caller if this recent; 0: fail closed",
    default: "0",
  },
  {
    name: "authorize-fresh",
    value: "ms",
    help:
      "reuse the agent's authorize answer for a caller this long without asking (forgotten on intention or roots changes); 0: ask every time",
    default: "0",
  },
  {
    name: "revoke-grace",
    value: "ms",
    help:
      "when intentions change, close open connections of now-denied callers after this; -1: never",
    default: "0",
  },
  {
    name: "leaf-expiry-margin",
    value: "ms",
    help:
      "when the leaf is this close to expiry without a renewal: warn, ask the agent again, and report not ready; 0: 10 % of its lifetime, at most 1 h",
    default: "0",
  },
  {
    name: "drain-timeout",
    value: "ms",
    help: "how long shutdown waits for open connections",
    default: "10000",
  },
  {
    name: "admin-bind",
    value: "addr:port",
    help: "admin app (state, metrics, dashboard); empty to disable",
    default: "127.0.0.1:19000",
  },
  {
    name: "admin-token",
    value: "token",
    help: "bearer token for POST /v1/drain (env MESHGATE_ADMIN_TOKEN)",
  },
  {
    name: "access-log",
    value: "path",
    help: "one JSON line per connection at close (or refusal) to this file, - for stdout",
  },
  {
    name: "access-log-sample",
    value: "fraction",
    help: "log this fraction of connections (0-1)",
    default: "1",
  },
  { name: "log-level", value: "level", help: "trace, debug, info, warn, error", default: "info" },
  { name: "log-json", help: "log one JSON object per line" },
  { name: "help", help: "show this help" },
];

/** The `-help` text. */
export function helpText(): string {
  const lines = FLAGS.map((f) => {
    const left = `  -${f.name}${f.value ? ` <${f.value}>` : ""}`;
    return `${left.padEnd(52)} ${f.help}${
      f.default !== undefined ? ` (default ${f.default})` : ""
    }`;
  });
  return `Usage: deno task proxy [flags]   (also: meshgate proxy [flags])

Runs a Consul Connect sidecar proxy. Pick one mode:
  -sidecar-for <id>   the sidecar registered for a service instance (like consul connect proxy)
  -proxy-id <id>      a connect-proxy registration
  -service <name>     flags only: -listen, -service-addr, -upstream, optionally -register

Flags (one dash or two):
${lines.join("\n")}
`;
}

function hostPort(
  flag: string,
  text: string,
  defaultHost?: string,
  minPort = 1,
): { hostname: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\w+)$/.exec(text) ??
    (defaultHost ? /^()()(\w+)$/.exec(text) : null);
  if (!m) throw new FlagError(flag, `"${text}" must be host:port`);
  // Like Consul, the port is parsed with base prefixes (0x1f90 works).
  const port = Number(m[3]);
  if (!Number.isInteger(port) || port < minPort || port > 65535) {
    throw new FlagError(flag, `"${text}": port must be a number ${minPort}-65535`);
  }
  const hostname = m[1] || m[2] || defaultHost;
  if (!hostname) throw new FlagError(flag, `"${text}": host is missing`);
  return { hostname, port };
}

/** Parses `-upstream name[.service|.query]:[host:]port`. */
export function parseUpstreamFlag(text: string): UpstreamConfig {
  const i = text.indexOf(":");
  if (i <= 0) throw new FlagError("-upstream", `"${text}" must be name:port or name:host:port`);
  let name = text.slice(0, i);
  let type: UpstreamConfig["type"] = "service";
  const dot = name.lastIndexOf(".");
  if (dot > 0) {
    const suffix = name.slice(dot + 1);
    if (suffix === "query") type = "prepared_query";
    else if (suffix !== "service") {
      throw new FlagError(
        "-upstream",
        `"${text}": unknown suffix .${suffix} (use .service or .query)`,
      );
    }
    name = name.slice(0, dot);
  }
  const bind = hostPort("-upstream", text.slice(i + 1), "127.0.0.1");
  return { type, name, bind };
}

function fraction(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0 || n > 1) {
    throw new FlagError(`-${flag}`, `"${text}" must be a number from 0 to 1`);
  }
  return n;
}

function intFlag(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) {
    throw new FlagError(`-${flag}`, `"${text}" must be a whole number ≥ 0`);
  }
  return n;
}

/**
 * Parses the command line. `env` supplies `CONNECT_PROXY_ID` and `CONNECT_SIDECAR_FOR`.
 * @throws {FlagError} naming the first bad flag
 */
export function parseFlags(
  args: string[],
  env: Record<string, string | undefined> = {},
): CliOptions {
  const known = new Map(FLAGS.map((f) => [f.name, f]));
  const values = new Map<string, string[]>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith("-") || arg === "-" || arg === "--") {
      throw new FlagError(arg, "unexpected argument (flags start with - or --)");
    }
    const [rawName, inline] = arg.replace(/^--?/, "").split(/=(.*)/s, 2);
    const spec = known.get(rawName);
    if (!spec) throw new FlagError(`-${rawName}`, "unknown flag (see -help)");
    let value = inline;
    if (spec.value) {
      if (value === undefined) {
        value = args[++i];
        if (value === undefined) {
          throw new FlagError(`-${rawName}`, `needs a value <${spec.value}>`);
        }
      }
    } else if (value !== undefined && !["true", "false"].includes(value)) {
      throw new FlagError(`-${rawName}`, `takes no value, got "${value}"`);
    } else value ??= "true";
    values.set(rawName, [...(values.get(rawName) ?? []), value]);
  }
  const one = (n: string) => values.get(n)?.at(-1);
  const flag = (n: string) => one(n) === "true";
  const limits: ProxyLimits = {
    handshakeTimeoutMs: intFlag("handshake-timeout", one("handshake-timeout") ?? "10000"),
    authorizeTimeoutMs: intFlag("authorize-timeout", one("authorize-timeout") ?? "5000"),
    localConnectTimeoutMs: intFlag("connect-timeout", one("connect-timeout") ?? "1000"),
    idleTimeoutMs: intFlag("idle-timeout", one("idle-timeout") ?? "0"),
    maxInbound: intFlag("max-inbound", one("max-inbound") ?? "0"),
    maxOutbound: intFlag("max-outbound", one("max-outbound") ?? "0"),
    authorizeCacheTtlMs: intFlag("authorize-cache-ttl", one("authorize-cache-ttl") ?? "0"),
    authorizeFreshMs: intFlag("authorize-fresh", one("authorize-fresh") ?? "0"),
    revokeGraceMs: one("revoke-grace") === "-1"
      ? -1
      : intFlag("revoke-grace", one("revoke-grace") ?? "0"),
    leafExpiryMarginMs: intFlag("leaf-expiry-margin", one("leaf-expiry-margin") ?? "0") ||
      undefined,
  };
  let logLevel: LogLevel;
  try {
    logLevel = parseLogLevel(one("log-level") ?? "info");
  } catch (err) {
    throw new FlagError("-log-level", (err as Error).message);
  }
  const out: CliOptions = {
    help: flag("help"),
    agent: {
      address: one("http-addr"),
      token: one("token"),
      tokenFile: one("token-file"),
      caFile: one("ca-file"),
      clientCert: one("client-cert"),
      clientKey: one("client-key"),
      tlsServerName: one("tls-server-name"),
    },
    limits,
    drainMs: intFlag("drain-timeout", one("drain-timeout") ?? "10000"),
    adminToken: one("admin-token") || env.MESHGATE_ADMIN_TOKEN || undefined,
    accessLog: one("access-log") || undefined,
    accessLogSample: fraction("access-log-sample", one("access-log-sample") ?? "1"),
    logLevel,
    logJson: flag("log-json"),
  };
  if (out.help) return out;
  const adminBind = one("admin-bind") ?? "127.0.0.1:19000";
  if (adminBind !== "") out.admin = hostPort("-admin-bind", adminBind, undefined, 0);
  // -proxy-id wins over -sidecar-for, which wins over flag mode (as in Consul).
  out.proxyId = one("proxy-id") ?? (env.CONNECT_PROXY_ID || undefined);
  out.sidecarFor = out.proxyId
    ? undefined
    : one("sidecar-for") ?? (env.CONNECT_SIDECAR_FOR || undefined);
  if (out.proxyId || out.sidecarFor) return out;
  const service = one("service");
  if (!service) {
    throw new FlagError(
      "-service",
      "-service, -sidecar-for or -proxy-id must be specified so that the proxy can configure itself",
    );
  }
  const listen = one("listen");
  const serviceAddr = one("service-addr");
  if (listen && !serviceAddr) throw new FlagError("-service-addr", "is required with -listen");
  const upstreams = (values.get("upstream") ?? []).map(parseUpstreamFlag);
  // Entries are keyed by name: a repeated name overwrites, as in Consul.
  const byName = new Map(upstreams.map((u) => [u.name, u]));
  out.config = {
    service,
    publicListener: listen ? hostPort("-listen", listen) : undefined,
    app: serviceAddr ? hostPort("-service-addr", serviceAddr) : undefined,
    upstreams: [...byName.values()],
  };
  if (flag("register")) {
    if (!listen) throw new FlagError("-register", "needs -listen (the address to register)");
    const suffix = one("register-id");
    out.register = {
      id: `${service}-proxy${suffix ? `-${suffix}` : ""}`,
      name: `${service}-proxy`,
    };
  }
  return out;
}
