/**
 * The Deno-specific half of the agent client: TLS to the agent and unix sockets through
 * `node:https` (see node_fetch.ts), and the token file. Kept out of `src/agent/` so that folder stays
 * runtime-neutral.
 * @module
 */
import { AgentClient, type AgentClientOptions } from "../agent/client.ts";
import { AGENT_ENV_VARS, resolveAgentConfig } from "../agent/config.ts";
import { AgentConfigError } from "../agent/errors.ts";
import { readCaPath } from "./ca_path.ts";
import { createNodeFetch } from "./node_fetch.ts";
import { TokenFile } from "./token_file.ts";

async function read(setting: string, path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    throw new AgentConfigError(setting, `cannot read ${path}: ${(err as Error).message}`);
  }
}

/** Every environment variable meshgate reads: the Consul CLI's, and its own. */
export const PROXY_ENV_VARS: readonly string[] = [
  ...AGENT_ENV_VARS,
  "CONNECT_PROXY_ID",
  "CONNECT_SIDECAR_FOR",
  "MESHGATE_ADMIN_TOKEN",
];

/**
 * Reads only the named environment variables, so that `--allow-env=<those names>` is enough
 * (least privilege: `Deno.env.toObject()` would need access to the whole environment).
 *
 * @example
 * ```ts
 * import { namedEnv, PROXY_ENV_VARS } from "@meshgate/meshgate";
 * const env = namedEnv(PROXY_ENV_VARS); // a name outside --allow-env reads as unset
 * console.log(env.CONSUL_HTTP_ADDR ?? "CONSUL_HTTP_ADDR is not set");
 * ```
 */
export function namedEnv(names: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of names) {
    try {
      const v = Deno.env.get(name);
      if (v !== undefined) env[name] = v;
    } catch (err) {
      // Not in --allow-env: treated as unset, so a narrower list works too.
      if (!(err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied)) {
        throw err;
      }
    }
  }
  return env;
}

/** The transport {@linkcode createDenoAgentClient} builds, and what to put in front of it. */
export interface DenoAgentTransportOptions {
  /**
   * Puts something in front of the transport (Deno's `fetch`, or `node:https` for agent TLS and
   * unix sockets), e.g. the `-workers` relay; the client's token is already in each request.
   */
  wrap?: (transport: NonNullable<AgentClientOptions["fetch"]>) => typeof fetch;
}

/**
 * Creates an agent client for Deno from options and `Deno.env`, wiring agent TLS, unix sockets
 * and the token file, which is re-read whenever it changes. The token follows the Consul CLI's
 * precedence: `tokenFile`, `token`, `CONSUL_HTTP_TOKEN_FILE`, `CONSUL_HTTP_TOKEN`.
 *
 * @example
 * ```ts
 * import { createDenoAgentClient } from "@meshgate/meshgate";
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 *
 * await using dev = await startDevAgent(); // the Consul test double; any agent will do
 * // Reads CONSUL_HTTP_ADDR, CONSUL_CACERT, CONSUL_HTTP_TOKEN_FILE… like the Consul CLI; an
 * // option given wins over its variable.
 * await using agent = await createDenoAgentClient({ address: dev.address });
 * console.log((await agent.roots()).value.TrustDomain);
 * ```
 */
export async function createDenoAgentClient(
  options: AgentClientOptions = {},
  transport: DenoAgentTransportOptions = {},
): Promise<AgentClient> {
  const env = options.env ?? namedEnv(AGENT_ENV_VARS);
  const { config, token } = resolveAgentConfig(options, env);
  // The file wins over any token given beside it; `token` is then only its fallback when empty.
  const tokenFile = config.tokenFile
    ? await TokenFile.open(config.tokenFile, {
      setting: config.tokenFileSetting,
      fallback: token,
    })
    : undefined;
  // Deno's fetch cannot skip verification, verify another server name, or dial a unix socket;
  // node:http(s) can, so those (and any agent TLS setting) go through it.
  // A client key alone counts too, so that it is refused below instead of silently ignored.
  const needsNode = config.transport === "unix" || config.caFile || config.caPath ||
    config.clientCert || config.clientKey || !config.sslVerify || config.tlsServerName;
  let fetchFn = options.fetch;
  if (needsNode && !fetchFn) {
    if (!!config.clientCert !== !!config.clientKey) {
      throw new AgentConfigError(
        config.clientCert ? "CONSUL_CLIENT_KEY" : "CONSUL_CLIENT_CERT",
        "a client certificate and its key must be given together",
      );
    }
    fetchFn = createNodeFetch({
      // As Consul (go-rootcerts): a CA file wins over a CA directory.
      ca: config.caFile
        ? await read("CONSUL_CACERT", config.caFile)
        : config.caPath
        ? await readCaPath(config.caPath, "CONSUL_CAPATH")
        : undefined,
      cert: config.clientCert ? await read("CONSUL_CLIENT_CERT", config.clientCert) : undefined,
      key: config.clientKey ? await read("CONSUL_CLIENT_KEY", config.clientKey) : undefined,
      verify: config.sslVerify,
      serverName: config.tlsServerName,
      socketPath: config.socketPath,
    });
  }
  if (transport.wrap) {
    const inner: NonNullable<AgentClientOptions["fetch"]> = fetchFn ??
      ((input, init) => fetch(input, init));
    const outer = transport.wrap(inner);
    // Closing the client closes the transport's connection pool, as without the wrapper.
    fetchFn = Object.assign(
      (input: URL | Request | string, init?: RequestInit) => outer(input, init),
      { close: () => inner.close?.() },
    ) as NonNullable<AgentClientOptions["fetch"]>;
  }
  return new AgentClient({
    ...options,
    env,
    fetch: fetchFn,
    tokenProvider: options.tokenProvider ?? (tokenFile && (() => tokenFile.current())),
  });
}
