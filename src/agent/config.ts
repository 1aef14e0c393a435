/**
 * How the agent client finds and authenticates to the Consul agent: the same environment
 * variables the Consul CLI reads, with explicit options taking precedence.
 * @module
 */
import { AgentConfigError } from "./errors.ts";

/** Settings for reaching the agent; every field overrides its environment variable. */
export interface AgentConnectionOptions {
  /**
   * Agent address: `host:port`, `http://…`, `https://…` or `unix:///path`
   * (`CONSUL_HTTP_ADDR`).
   * @default {"127.0.0.1:8500"}
   */
  address?: string;
  /**
   * ACL token sent as `X-Consul-Token` (`CONSUL_HTTP_TOKEN`). Never logged. The Consul CLI's
   * precedence applies: `tokenFile`, then `token`, then `CONSUL_HTTP_TOKEN_FILE`, then
   * `CONSUL_HTTP_TOKEN`; an empty string counts as unset.
   */
  token?: string;
  /**
   * File holding the token (`CONSUL_HTTP_TOKEN_FILE`); wins over `token`. Read by the runtime
   * adapter (`createDenoAgentClient`), which re-reads it when it changes.
   */
  tokenFile?: string;
  /**
   * Use HTTPS (`CONSUL_HTTP_SSL`), for a `host:port` address and for an `http://` one too: the
   * Consul CLI never reverts to http when TLS was asked for.
   */
  ssl?: boolean;
  /** Verify the agent's certificate (`CONSUL_HTTP_SSL_VERIFY`). @default {true} */
  sslVerify?: boolean;
  /** CA bundle for the agent's HTTPS certificate (`CONSUL_CACERT`). */
  caFile?: string;
  /**
   * Directory of CA certificates (PEM) for the agent's HTTPS, read recursively
   * (`CONSUL_CAPATH`). As in Consul, a CA file (`caFile` or `CONSUL_CACERT`) wins over it.
   */
  caPath?: string;
  /** Client certificate for the agent (`CONSUL_CLIENT_CERT`). */
  clientCert?: string;
  /** Client key for the agent (`CONSUL_CLIENT_KEY`). */
  clientKey?: string;
  /** Server name to verify on the agent's certificate (`CONSUL_TLS_SERVER_NAME`). */
  tlsServerName?: string;
  /** Enterprise namespace (`CONSUL_NAMESPACE`); sent as `ns` only when set. */
  namespace?: string;
  /** Enterprise admin partition (`CONSUL_PARTITION`); sent only when set. */
  partition?: string;
  /**
   * Datacenter to query (the Consul CLI's `-datacenter`): sent as `dc` on every request that
   * names none itself, as Consul's Go client does. Default: the agent's.
   */
  datacenter?: string;
}

/** The resolved connection settings. The token is kept out of this object on purpose. */
export interface AgentConfig {
  /** Base URL for requests; `http://localhost` for unix sockets. */
  baseUrl: string;
  /** `http`, `https` or `unix`. */
  transport: "http" | "https" | "unix";
  /** The socket path for `unix://` addresses. */
  socketPath?: string;
  /**
   * The file the token comes from, when the precedence picks one; the token returned beside
   * this config is then the one to send while the file is empty (as the Consul CLI does).
   */
  tokenFile?: string;
  /** Which setting named {@linkcode AgentConfig.tokenFile}: `tokenFile` or `CONSUL_HTTP_TOKEN_FILE`. */
  tokenFileSetting?: "tokenFile" | "CONSUL_HTTP_TOKEN_FILE";
  /** Whether to verify the agent's certificate. */
  sslVerify: boolean;
  /** CA bundle path. */
  caFile?: string;
  /** CA directory path (used only without a CA bundle). */
  caPath?: string;
  /** Client certificate path. */
  clientCert?: string;
  /** Client key path. */
  clientKey?: string;
  /** TLS server name. */
  tlsServerName?: string;
  /** Namespace to send, if any. */
  namespace?: string;
  /** Partition to send, if any. */
  partition?: string;
  /** Datacenter to send as `dc`, if any. */
  datacenter?: string;
}

/** Environment variables the client reads, as the Consul CLI names them. */
export const AGENT_ENV_VARS = [
  "CONSUL_HTTP_ADDR",
  "CONSUL_HTTP_TOKEN",
  "CONSUL_HTTP_TOKEN_FILE",
  "CONSUL_HTTP_SSL",
  "CONSUL_HTTP_SSL_VERIFY",
  "CONSUL_CACERT",
  "CONSUL_CAPATH",
  "CONSUL_CLIENT_CERT",
  "CONSUL_CLIENT_KEY",
  "CONSUL_TLS_SERVER_NAME",
  "CONSUL_NAMESPACE",
  "CONSUL_PARTITION",
] as const;

/** A read-only view of environment variables (e.g. `Deno.env.toObject()`, `process.env`). */
export type Environment = Readonly<Record<string, string | undefined>>;

function parseBool(name: string, value: string | undefined): boolean | undefined {
  if (value === undefined || value === "") return undefined;
  // Go's strconv.ParseBool, which the Consul CLI uses.
  if (["1", "t", "T", "true", "TRUE", "True"].includes(value)) return true;
  if (["0", "f", "F", "false", "FALSE", "False"].includes(value)) return false;
  throw new AgentConfigError(name, `"${value}" is not a boolean`);
}

/**
 * Picks the token, or the token file, by the Consul CLI's precedence (hashicorp/consul
 * `api.NewClient`, 1.22): the `-token-file` flag, then `-token`, then `CONSUL_HTTP_TOKEN_FILE`,
 * then `CONSUL_HTTP_TOKEN`. A file whose content is empty falls back to `token` (the flag's, else
 * the environment's). Empty strings count as unset.
 */
function resolveToken(
  options: AgentConnectionOptions,
  env: Environment,
): Pick<AgentConfig, "tokenFile" | "tokenFileSetting"> & { token?: string } {
  const envToken = env.CONSUL_HTTP_TOKEN || undefined;
  if (options.tokenFile) {
    return {
      tokenFile: options.tokenFile,
      tokenFileSetting: "tokenFile",
      token: options.token || envToken,
    };
  }
  if (options.token) return { token: options.token };
  if (env.CONSUL_HTTP_TOKEN_FILE) {
    return {
      tokenFile: env.CONSUL_HTTP_TOKEN_FILE,
      tokenFileSetting: "CONSUL_HTTP_TOKEN_FILE",
      token: envToken,
    };
  }
  return { token: envToken };
}

/**
 * Resolves connection settings from options and environment, options first.
 * Returns the config and the token separately, so the config can be logged. When
 * `config.tokenFile` is set, the file's content is the token and the returned `token` only the
 * fallback for an empty file.
 *
 * @example
 * ```ts
 * import { resolveAgentConfig } from "@meshgate/meshgate/agent";
 * const { config } = resolveAgentConfig({}, { CONSUL_HTTP_ADDR: "https://10.0.0.5:8501" });
 * console.log(config.baseUrl); // https://10.0.0.5:8501
 * ```
 */
export function resolveAgentConfig(
  options: AgentConnectionOptions = {},
  env: Environment = {},
): { config: AgentConfig; token?: string } {
  const addrSetting = options.address !== undefined ? "address" : "CONSUL_HTTP_ADDR";
  const address = (options.address ?? env.CONSUL_HTTP_ADDR ?? "").trim() || "127.0.0.1:8500";
  const ssl = options.ssl ?? parseBool("CONSUL_HTTP_SSL", env.CONSUL_HTTP_SSL) ?? false;
  const sslVerify = options.sslVerify ??
    parseBool("CONSUL_HTTP_SSL_VERIFY", env.CONSUL_HTTP_SSL_VERIFY) ?? true;
  const { token, tokenFile, tokenFileSetting } = resolveToken(options, env);
  const common = {
    ...(tokenFile ? { tokenFile, tokenFileSetting } : {}),
    sslVerify,
    caFile: options.caFile ?? (env.CONSUL_CACERT || undefined),
    caPath: options.caPath ?? (env.CONSUL_CAPATH || undefined),
    clientCert: options.clientCert ?? (env.CONSUL_CLIENT_CERT || undefined),
    clientKey: options.clientKey ?? (env.CONSUL_CLIENT_KEY || undefined),
    tlsServerName: options.tlsServerName ?? (env.CONSUL_TLS_SERVER_NAME || undefined),
    namespace: options.namespace ?? (env.CONSUL_NAMESPACE || undefined),
    partition: options.partition ?? (env.CONSUL_PARTITION || undefined),
    datacenter: options.datacenter || undefined,
  };
  let config: AgentConfig;
  if (address.startsWith("unix://")) {
    const socketPath = address.slice("unix://".length);
    if (!socketPath) throw new AgentConfigError(addrSetting, "unix:// address has no path");
    config = { ...common, baseUrl: "http://localhost", transport: "unix", socketPath };
  } else {
    const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(address)
      ? address
      : `${ssl ? "https" : "http"}://${address}`;
    let url: URL;
    try {
      url = new URL(withScheme);
    } catch {
      throw new AgentConfigError(addrSetting, `"${address}" is not a valid address`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new AgentConfigError(addrSetting, `unsupported scheme ${url.protocol}`);
    }
    if (url.pathname !== "/" || url.search) {
      throw new AgentConfigError(addrSetting, `"${address}" must not have a path or query`);
    }
    // As the Consul CLI (api.NewClient): an `http://` address with CONSUL_HTTP_SSL=true is
    // still dialled with TLS (measured against consul 1.22.7).
    const transport = url.protocol === "https:" || ssl ? "https" : "http";
    config = { ...common, baseUrl: `${transport}://${url.host}`, transport };
  }
  return { config, token };
}
