/**
 * `meshgate proxy` flags → options. Flags are spelled as `consul connect proxy` spells them
 * and accepted with one dash or two; every error names the flag.
 * @module
 */
import { type LogLevel, parseLogLevel } from "../net/log.ts";
import type { ProxyConfig } from "../proxy/config.ts";
import type { ProxyLimits } from "../proxy/proxy.ts";
import type { OutboundTls, UpstreamConfig } from "../outbound/listener.ts";
import type { AgentConnectionOptions } from "../agent/config.ts";
import type { AgentClientOptions } from "../agent/client.ts";
import { parseGoDuration } from "../agent/duration.ts";

/** What the command line asks for. */
export interface CliOptions {
  /** Print help and exit. */
  help: boolean;
  /**
   * Agent settings from flags (environment fills the rest): Consul's HTTP API flags, `-stale`
   * included.
   */
  agent: AgentConnectionOptions & Pick<AgentClientOptions, "stale">;
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
  /** `-pprof-addr` and `-pprof-timeout`: where to serve profiles; absent when off. */
  pprof?: { hostname: string; port: number; timeoutMs: number };
  /** `-workers`: threads serving the listeners (`auto`: one per CPU). */
  workers: number;
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

/** Where a flag comes from: `consul connect proxy`'s own, Consul's HTTP API flags, or ours. */
export type FlagSection = "proxy" | "http" | "meshgate";

/** One flag: how it parses and what `-help` says about it. */
export interface FlagSpec {
  /** The name without dashes, e.g. `sidecar-for`. */
  name: string;
  /** The value's placeholder; absent for a boolean flag (`-flag`, `-flag=false`). */
  value?: string;
  /** One line of help. */
  help: string;
  /** The default, as shown in `-help`. */
  default?: string;
  /** The help section. */
  section: FlagSection;
}

/** Every flag, for parsing and for `-help`. */
export const FLAGS: FlagSpec[] = [
  // ---- consul connect proxy's own flags (Consul 1.22 command/connect/proxy) ----
  {
    section: "proxy",
    name: "sidecar-for",
    value: "id",
    help: "run the sidecar registered for this service instance ID (env CONNECT_SIDECAR_FOR)",
  },
  {
    section: "proxy",
    name: "proxy-id",
    value: "id",
    help: "run the connect-proxy registration with this ID (env CONNECT_PROXY_ID)",
  },
  {
    section: "proxy",
    name: "service",
    value: "name",
    help: "flag mode: the service this proxy represents",
  },
  {
    section: "proxy",
    name: "listen",
    value: "host:port",
    help: "flag mode: public mTLS listener (none: client-only proxy)",
  },
  {
    section: "proxy",
    name: "service-addr",
    value: "host:port",
    help: "flag mode: the local application (required with -listen)",
  },
  {
    section: "proxy",
    name: "upstream",
    value: "name[.service|.query]:[host:]port",
    help: "flag mode: an upstream listener (repeatable)",
  },
  {
    section: "proxy",
    name: "register",
    help: "flag mode: register this proxy with the agent and keep a TTL check passing",
  },
  {
    section: "proxy",
    name: "register-id",
    value: "suffix",
    help: "suffix of the registered ID (<service>-proxy-<suffix>)",
  },
  {
    section: "proxy",
    name: "log-level",
    value: "level",
    help: "trace, debug, info, warn, error (any case; err = error)",
    default: "info",
  },
  { section: "proxy", name: "log-json", help: "log one JSON object per line" },
  {
    section: "proxy",
    name: "pprof-addr",
    value: "host:port",
    help: "serve V8 CPU and heap-allocation profiles on http://<addr>/debug/pprof/ " +
      "(Chrome DevTools formats: Go's pprof cannot profile V8; needs --allow-sys=inspector); " +
      ":port is every address",
  },
  {
    section: "proxy",
    name: "pprof-timeout",
    value: "duration",
    help: "a profile's ?seconds= window must be shorter than this, as Go's pprof under " +
      "Consul's WriteTimeout (Go duration, at least 1s)",
    default: "30s",
  },
  // ---- Consul's HTTP API flags (command/flags/http.go: client and server flags) ----
  {
    section: "http",
    name: "http-addr",
    value: "addr",
    help: "agent address: host:port, http(s)://…, unix://path (env CONSUL_HTTP_ADDR)",
    default: "127.0.0.1:8500",
  },
  { section: "http", name: "token", value: "token", help: "ACL token (env CONSUL_HTTP_TOKEN)" },
  {
    section: "http",
    name: "token-file",
    value: "path",
    help: "file with the ACL token, wins over -token, re-read when it changes " +
      "(env CONSUL_HTTP_TOKEN_FILE)",
  },
  {
    section: "http",
    name: "ca-file",
    value: "path",
    help: "CA bundle for the agent's HTTPS (env CONSUL_CACERT)",
  },
  {
    section: "http",
    name: "ca-path",
    value: "dir",
    help: "directory of CA certificates (PEM) for the agent's HTTPS, read recursively; " +
      "-ca-file / CONSUL_CACERT wins over it, as in Consul (env CONSUL_CAPATH)",
  },
  {
    section: "http",
    name: "client-cert",
    value: "path",
    help: "client certificate for the agent (env CONSUL_CLIENT_CERT)",
  },
  {
    section: "http",
    name: "client-key",
    value: "path",
    help: "client key for the agent (env CONSUL_CLIENT_KEY)",
  },
  {
    section: "http",
    name: "tls-server-name",
    value: "name",
    help: "server name to verify on the agent (env CONSUL_TLS_SERVER_NAME)",
  },
  {
    section: "http",
    name: "datacenter",
    value: "dc",
    help: "datacenter to query: sent as ?dc= on every request, as Consul's client does " +
      "(an upstream's own datacenter wins); default the agent's",
  },
  {
    section: "http",
    name: "stale",
    help: "let any Consul server, not only the leader, answer reads (?stale on health, " +
      "discovery chain, intentions, prepared queries): faster, maybe stale",
  },
  // ---- meshgate's own ----
  {
    section: "meshgate",
    name: "handshake-timeout",
    value: "ms",
    help: "inbound TLS handshake timeout",
    default: "10000",
  },
  {
    section: "meshgate",
    name: "authorize-timeout",
    value: "ms",
    help: "authorize timeout (refuse after it)",
    default: "5000",
  },
  {
    section: "meshgate",
    name: "connect-timeout",
    value: "ms",
    help: "local application connect timeout",
    default: "1000",
  },
  {
    section: "meshgate",
    name: "idle-timeout",
    value: "ms",
    help: "close proxied connections idle this long (0: never)",
    default: "0",
  },
  {
    section: "meshgate",
    name: "max-inbound",
    value: "n",
    help: "most concurrent inbound connections (0: unlimited)",
    default: "0",
  },
  {
    section: "meshgate",
    name: "max-outbound",
    value: "n",
    help: "most concurrent connections per upstream (0: unlimited)",
    default: "0",
  },
  {
    section: "meshgate",
    name: "authorize-cache-ttl",
    value: "ms",
    help:
      "when the agent cannot answer authorize, use its answer for the caller if this recent; 0: fail closed",
    default: "0",
  },
  {
    section: "meshgate",
    name: "authorize-fresh",
    value: "ms",
    help:
      "reuse the agent's authorize answer for a caller this long without asking (forgotten on intention or roots changes); 0: ask every time",
    default: "0",
  },
  {
    section: "meshgate",
    name: "revoke-grace",
    value: "ms",
    help:
      "when intentions change, close open connections of now-denied callers after this; -1: never",
    default: "0",
  },
  {
    section: "meshgate",
    name: "leaf-expiry-margin",
    value: "ms",
    help:
      "when the leaf is this close to expiry without a renewal: warn, ask the agent again, and report not ready; 0: 10 % of its lifetime, at most 1 h",
    default: "0",
  },
  {
    section: "meshgate",
    name: "drain-timeout",
    value: "ms",
    help: "how long shutdown waits for open connections",
    default: "10000",
  },
  {
    section: "meshgate",
    name: "admin-bind",
    value: "addr:port",
    help: "admin app (state, metrics, dashboard); empty to disable",
    default: "127.0.0.1:19000",
  },
  {
    section: "meshgate",
    name: "admin-token",
    value: "token",
    help: "bearer token for POST /v1/drain (env MESHGATE_ADMIN_TOKEN)",
  },
  {
    section: "meshgate",
    name: "access-log",
    value: "path",
    help: "one JSON line per connection at close (or refusal) to this file, - for stdout",
  },
  {
    section: "meshgate",
    name: "access-log-sample",
    value: "fraction",
    help: "log this fraction of connections (0-1)",
    default: "1",
  },
  {
    section: "meshgate",
    name: "workers",
    value: "n|auto",
    help: "threads serving the public and upstream listeners on the same ports " +
      "(SO_REUSEPORT; one set of agent watches); auto: one per CPU",
    default: "1",
  },
  {
    section: "meshgate",
    name: "outbound-tls",
    value: "node|native",
    help: "TLS stack of upstream listeners: node (node:tls), or native (Deno.connectTls: " +
      "less CPU per byte and per connection, but Nagle stays on: up to ~45 ms more per new " +
      "connection and for requests written in pieces)",
    default: "node",
  },
  { section: "meshgate", name: "help", help: "show this help (also -h, as Go's flag package)" },
];

const SECTIONS: [FlagSection, string][] = [
  ["proxy", "Command options (as consul connect proxy):"],
  ["http", "HTTP API options (as every consul command; the CONSUL_* environment applies):"],
  ["meshgate", "meshgate options:"],
];

/** The `-help` text. */
export function helpText(): string {
  const line = (f: FlagSpec) => {
    const left = `  -${f.name}${f.value ? ` <${f.value}>` : ""}`;
    return `${left.padEnd(52)} ${f.help}${
      f.default !== undefined ? ` (default ${f.default})` : ""
    }`;
  };
  const sections = SECTIONS.map(([section, title]) =>
    `${title}\n${FLAGS.filter((f) => f.section === section).map(line).join("\n")}`
  );
  return `Usage: deno task proxy [flags]   (also: meshgate proxy [flags])

Runs a Consul Connect sidecar proxy. Pick one mode:
  -sidecar-for <id>   the sidecar registered for a service instance (like consul connect proxy)
  -proxy-id <id>      a connect-proxy registration
  -service <name>     flags only: -listen, -service-addr, -upstream, optionally -register

Every flag of consul connect proxy (Consul 1.22) works here with the same meaning
(-pprof-addr serves V8 profiles: Go's pprof cannot profile JavaScript).
Flags take one dash or two, and -flag value or -flag=value.

${sections.join("\n\n")}
`;
}

/**
 * Go's `strconv.ParseInt(text, 0, 0)`, which Consul uses for `-listen` and `-upstream` ports:
 * decimal, `0x`/`0o`/`0b` prefixes, a leading `0` for octal, `_` between digits. `undefined`
 * when Go would refuse it (`1e3`, `8080.0`, ` 80`, `""`).
 */
function parseGoInt(text: string): number | undefined {
  const m =
    /^([+-]?)(0[xX](?:_?[0-9a-fA-F])+|0[bB](?:_?[01])+|0[oO](?:_?[0-7])+|0(?:_?[0-7])*|[1-9](?:_?[0-9])*)$/
      .exec(text);
  if (!m) return undefined;
  const digits = m[2]!.replaceAll("_", ""); // the digits group is not optional
  const prefix = digits.slice(0, 2).toLowerCase();
  const n = prefix === "0x"
    ? parseInt(digits.slice(2), 16)
    : prefix === "0b"
    ? parseInt(digits.slice(2), 2)
    : prefix === "0o"
    ? parseInt(digits.slice(2), 8)
    : digits.length > 1 && digits[0] === "0"
    ? parseInt(digits.slice(1), 8)
    : parseInt(digits, 10);
  return m[1] === "-" ? -n : n;
}

interface HostPortRules {
  /** Host when the text has none (`:8443`, or a bare port where `barePort`). */
  emptyHost?: string;
  /** Whether a bare port (no colon) is allowed. */
  barePort?: boolean;
  /** Lowest port accepted. @default {1} */
  minPort?: number;
  /** Ports as Go's ParseInt(…, 0, 0) reads them (Consul's -listen, -upstream); else decimal. */
  goPort?: boolean;
}

/** Host names, IPv4 addresses, and IPv6 addresses (bracketed in the flag, with a zone maybe). */
const HOST = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;
const IPV6 = /^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(?:%[A-Za-z0-9._-]+)?$/;

/** Parses `host:port` (`[v6]:port`, `:port`) as Go's `net.SplitHostPort` splits it. */
function hostPort(
  flag: string,
  text: string,
  rules: HostPortRules = {},
): { hostname: string; port: number } {
  const { emptyHost, barePort = false, minPort = 1, goPort = false } = rules;
  let host: string;
  let portText: string;
  let bracketed = false;
  if (text.startsWith("[")) {
    const m = /^\[([^\]]*)\]:([^:]*)$/.exec(text);
    if (!m) throw new FlagError(flag, `"${text}" must be host:port ([v6 address]:port)`);
    host = m[1]!; // both groups are required (possibly "")
    portText = m[2]!;
    bracketed = true;
  } else if (text.includes(":")) {
    const i = text.lastIndexOf(":");
    host = text.slice(0, i);
    portText = text.slice(i + 1);
    if (host.includes(":")) {
      throw new FlagError(flag, `"${text}": too many colons (write IPv6 addresses as [::1]:port)`);
    }
  } else if (barePort) {
    host = "";
    portText = text;
  } else {
    throw new FlagError(flag, `"${text}" must be host:port`);
  }
  const port = goPort ? parseGoInt(portText) : /^[0-9]+$/.test(portText) ? Number(portText) : NaN;
  if (port === undefined || !Number.isInteger(port) || port < minPort || port > 65535) {
    throw new FlagError(flag, `"${text}": port must be a number ${minPort}-65535`);
  }
  if (host === "") {
    if (emptyHost === undefined) throw new FlagError(flag, `"${text}": host is missing`);
    return { hostname: emptyHost, port };
  }
  if (bracketed ? !IPV6.test(host) : !HOST.test(host)) {
    throw new FlagError(flag, `"${text}": "${host}" is not a host name or IP address`);
  }
  return { hostname: host, port };
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
  // As Consul: the port alone, or host:port; an empty host is 127.0.0.1.
  const bind = hostPort("-upstream", text.slice(i + 1), {
    emptyHost: "127.0.0.1",
    barePort: true,
    goPort: true,
  });
  return { type, name, bind };
}

function fraction(flag: string, text: string): number {
  const n = /^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$/.test(text) ? Number(text) : NaN;
  if (!(n >= 0 && n <= 1)) {
    throw new FlagError(`-${flag}`, `"${text}" must be a number from 0 to 1`);
  }
  return n;
}

/** The longest delay a timer can take (setTimeout fires at once past it). */
const MAX_MS = 2 ** 31 - 1;

function intFlag(flag: string, text: string, min = 0, max = MAX_MS): number {
  if (!/^[0-9]+$/.test(text) || Number(text) < min) {
    throw new FlagError(`-${flag}`, `"${text}" must be a whole number ≥ ${min}`);
  }
  const n = Number(text);
  if (n > max) throw new FlagError(`-${flag}`, `"${text}" must be at most ${max}`);
  return n;
}

/** A Go duration (`30s`, `1m30s`, `500ms`), as Go's `flag.DurationVar` reads it, in ms. */
function goDurationFlag(flag: string, text: string): number {
  let ms: number;
  try {
    // Go reads the text as given: no spaces around it.
    ms = text === text.trim() ? parseGoDuration(text) : NaN;
  } catch {
    ms = NaN;
  }
  if (Number.isNaN(ms)) {
    throw new FlagError(`-${flag}`, `"${text}" is not a duration (e.g. 30s, 1m30s, 500ms)`);
  }
  if (ms > MAX_MS) throw new FlagError(`-${flag}`, `"${text}" must be at most 596h`);
  return ms;
}

/** `-outbound-tls node|native`. */
function outboundTlsFlag(text: string): OutboundTls {
  if (text === "node" || text === "native") return text;
  throw new FlagError("-outbound-tls", `"${text}" must be node or native`);
}

/** Most `-workers`: more threads than this is a typo, not a machine. */
const MAX_WORKERS = 1024;

/** `-workers n|auto`: a whole number from 1, or one thread per CPU. */
function workersFlag(text: string): number {
  if (text === "auto") return Math.max(1, Math.min(MAX_WORKERS, navigator.hardwareConcurrency));
  if (!/^[0-9]+$/.test(text) || Number(text) < 1 || Number(text) > MAX_WORKERS) {
    throw new FlagError(
      "-workers",
      `"${text}" must be a whole number from 1 to ${MAX_WORKERS}, or auto (one per CPU)`,
    );
  }
  return Number(text);
}

/** Go's `strconv.ParseBool`, which Consul's boolean flags use. */
const BOOLEANS = new Map([
  ...["1", "t", "T", "TRUE", "true", "True"].map((v) => [v, "true"] as const),
  ...["0", "f", "F", "FALSE", "false", "False"].map((v) => [v, "false"] as const),
]);

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
  const argv = args.values(); // a flag's value is taken with argv.next()
  for (const arg of argv) {
    if (!arg.startsWith("-") || arg === "-" || arg === "--") {
      throw new FlagError(arg, "unexpected argument (flags start with - or --)");
    }
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const rawName = eq < 0 ? body : body.slice(0, eq);
    const inline = eq < 0 ? undefined : body.slice(eq + 1);
    // Go's flag package takes -h for -help.
    const spec = known.get(rawName === "h" ? "help" : rawName);
    if (!spec) throw new FlagError(`-${rawName}`, "unknown flag (see -help)");
    let value = inline;
    if (spec.value) {
      if (value === undefined) {
        value = argv.next().value;
        if (value === undefined) {
          throw new FlagError(`-${rawName}`, `needs a value <${spec.value}>`);
        }
      }
    } else if (value !== undefined) {
      const bool = BOOLEANS.get(value);
      if (!bool) throw new FlagError(`-${rawName}`, `takes no value or true/false, got "${value}"`);
      value = bool;
    } else value = "true";
    values.set(spec.name, [...(values.get(spec.name) ?? []), value]);
  }
  const one = (n: string) => values.get(n)?.at(-1);
  const flag = (n: string) => one(n) === "true";
  const limits: ProxyLimits = {
    // A deadline of 0 would refuse every connection: at least 1 ms.
    handshakeTimeoutMs: intFlag("handshake-timeout", one("handshake-timeout") ?? "10000", 1),
    authorizeTimeoutMs: intFlag("authorize-timeout", one("authorize-timeout") ?? "5000", 1),
    localConnectTimeoutMs: intFlag("connect-timeout", one("connect-timeout") ?? "1000", 1),
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
    outboundTls: outboundTlsFlag(one("outbound-tls") ?? "node"),
  };
  let logLevel: LogLevel;
  try {
    const level = one("log-level") ?? "info";
    // Consul still takes its former ERR level.
    logLevel = parseLogLevel(level.toUpperCase() === "ERR" ? "error" : level);
  } catch (err) {
    throw new FlagError("-log-level", (err as Error).message);
  }
  const out: CliOptions = {
    help: flag("help"),
    agent: {
      address: one("http-addr") || undefined, // empty: the environment, then the default
      token: one("token"),
      tokenFile: one("token-file"),
      caFile: one("ca-file") || undefined,
      caPath: one("ca-path") || undefined,
      clientCert: one("client-cert") || undefined,
      clientKey: one("client-key") || undefined,
      tlsServerName: one("tls-server-name") || undefined,
      datacenter: one("datacenter") || undefined,
      stale: flag("stale"),
    },
    limits,
    drainMs: intFlag("drain-timeout", one("drain-timeout") ?? "10000"),
    adminToken: one("admin-token") || env.MESHGATE_ADMIN_TOKEN || undefined,
    accessLog: one("access-log") || undefined,
    accessLogSample: fraction("access-log-sample", one("access-log-sample") ?? "1"),
    logLevel,
    logJson: flag("log-json"),
    workers: workersFlag(one("workers") ?? "1"),
  };
  if (out.help) return out;
  // As Consul: an empty -pprof-addr is off; the timeout is read whether or not it is used.
  const pprofTimeoutMs = goDurationFlag("pprof-timeout", one("pprof-timeout") ?? "30s");
  const pprofAddr = one("pprof-addr");
  if (pprofAddr) {
    out.pprof = {
      ...hostPort("-pprof-addr", pprofAddr, { emptyHost: "0.0.0.0", minPort: 0 }),
      // Consul serves with at least one second, whatever is asked.
      timeoutMs: Math.max(pprofTimeoutMs, 1000),
    };
  }
  const adminBind = one("admin-bind") ?? "127.0.0.1:19000";
  if (adminBind !== "") {
    out.admin = hostPort("-admin-bind", adminBind, { emptyHost: "0.0.0.0", minPort: 0 });
  }
  // -proxy-id wins over -sidecar-for, which wins over flag mode; an empty value is no value
  // and the environment applies (as in Consul).
  out.proxyId = one("proxy-id") || env.CONNECT_PROXY_ID || undefined;
  out.sidecarFor = out.proxyId
    ? undefined
    : one("sidecar-for") || env.CONNECT_SIDECAR_FOR || undefined;
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
    // `-listen :8443` listens on every address, as Consul's does.
    publicListener: listen
      ? hostPort("-listen", listen, { emptyHost: "0.0.0.0", goPort: true })
      : undefined,
    // Go dials the local system for `:8080`.
    app: serviceAddr
      ? hostPort("-service-addr", serviceAddr, { emptyHost: "127.0.0.1" })
      : undefined,
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
