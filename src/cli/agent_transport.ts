/**
 * The Deno-specific half of the agent client: TLS to the agent and unix sockets through
 * `Deno.createHttpClient`, and the token file. Kept out of `src/agent/` so that folder stays
 * runtime-neutral.
 * @module
 */
import { AgentClient, type AgentClientOptions } from "../agent/client.ts";
import { resolveAgentConfig } from "../agent/config.ts";
import { AgentConfigError } from "../agent/errors.ts";

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
  const needsClient = config.transport === "unix" || config.caFile || config.clientCert ||
    !config.sslVerify;
  let fetchFn = options.fetch;
  if (needsClient && !fetchFn) {
    const init: Deno.CreateHttpClientOptions & Record<string, unknown> = {};
    if (config.caFile) init.caCerts = [await read("CONSUL_CACERT", config.caFile)];
    if (config.clientCert && config.clientKey) {
      init.cert = await read("CONSUL_CLIENT_CERT", config.clientCert);
      init.key = await read("CONSUL_CLIENT_KEY", config.clientKey);
    }
    if (config.transport === "unix") init.proxy = { transport: "unix", path: config.socketPath! };
    const client = Deno.createHttpClient(init as Deno.CreateHttpClientOptions);
    fetchFn = (input, reqInit) => fetch(input, { ...reqInit, client } as unknown as RequestInit);
  }
  return new AgentClient({ ...options, env, token: resolvedToken, fetch: fetchFn });
}
