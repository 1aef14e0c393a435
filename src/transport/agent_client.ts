/**
 * The Deno-specific half of the agent client: TLS to the agent and unix sockets through
 * `node:https` (see node_fetch.ts), and the token file. Kept out of `src/agent/` so that folder stays
 * runtime-neutral.
 * @module
 */
import { AgentClient, type AgentClientOptions } from "../agent/client.ts";
import { resolveAgentConfig } from "../agent/config.ts";
import { AgentConfigError } from "../agent/errors.ts";
import { createNodeFetch } from "./node_fetch.ts";

async function read(setting: string, path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    throw new AgentConfigError(setting, `cannot read ${path}: ${(err as Error).message}`);
  }
}

/**
 * Creates an agent client for Deno from options and `Deno.env`, wiring agent TLS, unix sockets
 * and `CONSUL_HTTP_TOKEN_FILE`.
 *
 * @example
 * ```ts ignore
 * import { createDenoAgentClient } from "@meshgate/meshgate";
 * // Reads CONSUL_HTTP_ADDR, CONSUL_CACERT, CONSUL_HTTP_TOKEN_FILE… like the Consul CLI.
 * const agent = await createDenoAgentClient();
 * console.log((await agent.roots()).value.TrustDomain);
 * ```
 */
export async function createDenoAgentClient(
  options: AgentClientOptions = {},
): Promise<AgentClient> {
  const env = options.env ?? Deno.env.toObject();
  const { config, token } = resolveAgentConfig(options, env);
  let resolvedToken = token;
  if (!resolvedToken && config.tokenFile) {
    resolvedToken = (await read("CONSUL_HTTP_TOKEN_FILE", config.tokenFile)).trim();
  }
  // Deno's fetch cannot skip verification, verify another server name, or dial a unix socket;
  // node:http(s) can, so those (and any agent TLS setting) go through it.
  const needsNode = config.transport === "unix" || config.caFile || config.clientCert ||
    !config.sslVerify || config.tlsServerName;
  let fetchFn = options.fetch;
  if (needsNode && !fetchFn) {
    if (!!config.clientCert !== !!config.clientKey) {
      throw new AgentConfigError(
        config.clientCert ? "CONSUL_CLIENT_KEY" : "CONSUL_CLIENT_CERT",
        "a client certificate and its key must be given together",
      );
    }
    fetchFn = createNodeFetch({
      ca: config.caFile ? await read("CONSUL_CACERT", config.caFile) : undefined,
      cert: config.clientCert ? await read("CONSUL_CLIENT_CERT", config.clientCert) : undefined,
      key: config.clientKey ? await read("CONSUL_CLIENT_KEY", config.clientKey) : undefined,
      verify: config.sslVerify,
      serverName: config.tlsServerName,
      socketPath: config.socketPath,
    });
  }
  return new AgentClient({ ...options, env, token: resolvedToken, fetch: fetchFn });
}
