/**
 * {@linkcode OperatorClient}: the Consul writes an operator (or a test, or a setup script) makes
 * and a proxy or a Connect-native service never does: the CA configuration, intention CRUD,
 * config entries and prepared-query CRUD. Kept out of {@linkcode AgentClient} so that the
 * proxy's client carries only what its least-privilege token may call. Runs on the same
 * transport, token and base URL as the {@linkcode AgentClient} it wraps.
 * @module
 */
import { AgentClient, type AgentClientOptions, type RequestOptions } from "./client.ts";
import {
  decodeAny,
  decodeBoolean,
  decodeCAConfig,
  DecodeFailure,
  decodeIntention,
} from "./decode.ts";
import type {
  CAConfiguration,
  ConfigEntry,
  Intention,
  IntentionInput,
  PreparedQueryDefinition,
} from "./types.ts";

/**
 * Operator-only Consul calls: CA configuration, intention CRUD, config entries and prepared
 * queries. Build it on an {@linkcode AgentClient} to share its transport, token and base URL
 * (closing the operator client then leaves that client open), or from the same options as an
 * {@linkcode AgentClient} (then it owns the client it makes and closes it).
 *
 * Every method sends one request through {@linkcode AgentClient.request}, so errors are the
 * agent client's: an {@linkcode AgentError} naming method, path, status and Consul's text on an
 * HTTP error, an {@linkcode AgentNetworkError} when the agent cannot be reached, an
 * {@linkcode AgentDecodeError} on a malformed answer.
 *
 * @example
 * ```ts
 * import { AgentClient } from "@meshgate/meshgate";
 * import { OperatorClient } from "@meshgate/meshgate/agent";
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 * await using dev = await startDevAgent();
 * await using agent = new AgentClient({ address: dev.address });
 * const operator = new OperatorClient(agent);
 * await operator.upsertIntention("web", "db", { Action: "deny" });
 * const uri = `spiffe://${dev.ca.trustDomain}/ns/default/dc/dc1/svc/web`;
 * console.log((await agent.authorize({ Target: "db", ClientCertURI: uri })).Authorized); // false
 * ```
 */
export class OperatorClient implements AsyncDisposable {
  /** The agent client every request goes through. */
  readonly agent: AgentClient;
  readonly #ownsAgent: boolean;

  /**
   * Creates an operator client; nothing is sent until a method is called.
   * @param agent an {@linkcode AgentClient} to share (it stays the caller's to close), or the
   * options to make one with (address, token, transport; then this client owns it)
   *
   * @example
   * ```ts
   * import { OperatorClient } from "@meshgate/meshgate/agent";
   * // Its own agent client, from options (and CONSUL_HTTP_* in `env`).
   * await using operator = new OperatorClient({ address: "127.0.0.1:8500", token: "s3cr3t" });
   * console.log(operator.agent.config.baseUrl); // http://127.0.0.1:8500
   * ```
   */
  constructor(agent: AgentClient | AgentClientOptions = {}) {
    this.#ownsAgent = !(agent instanceof AgentClient);
    this.agent = agent instanceof AgentClient ? agent : new AgentClient(agent);
  }

  /** Keeps the token out of `console.log` and `Deno.inspect`. */
  [Symbol.for("Deno.customInspect")](): string {
    return `OperatorClient(${this.agent.config.baseUrl}${
      this.agent.hasToken ? ", token: <redacted>" : ""
    })`;
  }

  // ---- CA --------------------------------------------------------------------------------

  /**
   * `GET /v1/connect/ca/configuration`: the CA provider and its settings (needs `operator:read`).
   *
   * @example
   * ```ts
   * import { OperatorClient } from "@meshgate/meshgate/agent";
   * import { startDevAgent } from "@meshgate/meshgate/devagent";
   * await using dev = await startDevAgent();
   * await using operator = new OperatorClient({ address: dev.address });
   * console.log((await operator.caConfiguration()).Provider); // consul
   * ```
   */
  async caConfiguration(opts?: RequestOptions): Promise<CAConfiguration> {
    return (await this.agent.request({
      method: "GET",
      path: "/v1/connect/ca/configuration",
      decode: decodeCAConfig,
    }, opts)).value;
  }

  /**
   * `PUT /v1/connect/ca/configuration` (needs `operator:write`): new key material rotates the
   * root; proxies see the new root through their roots watch.
   *
   * @example
   * ```ts
   * import { OperatorClient } from "@meshgate/meshgate/agent";
   * import { startDevAgent } from "@meshgate/meshgate/devagent";
   * await using dev = await startDevAgent();
   * await using operator = new OperatorClient({ address: dev.address });
   * const current = await operator.caConfiguration();
   * await operator.setCAConfiguration({
   *   Provider: "consul",
   *   Config: { ...current.Config, LeafCertTTL: "24h" },
   * });
   * ```
   */
  async setCAConfiguration(config: CAConfiguration, opts?: RequestOptions): Promise<void> {
    await this.agent.request({
      method: "PUT",
      path: "/v1/connect/ca/configuration",
      body: config,
      decode: decodeAny,
    }, opts);
  }

  // ---- intentions ------------------------------------------------------------------------

  /**
   * `GET /v1/connect/intentions/exact`: the intention from `source` to `destination`, or
   * `undefined` when there is none.
   *
   * @example
   * ```ts
   * import { OperatorClient } from "@meshgate/meshgate/agent";
   * import { startDevAgent } from "@meshgate/meshgate/devagent";
   * await using dev = await startDevAgent();
   * await using operator = new OperatorClient({ address: dev.address });
   * await operator.upsertIntention("web", "db", { Action: "allow" });
   * console.log((await operator.intention("web", "db"))?.Action); // allow
   * console.log(await operator.intention("api", "db")); // undefined
   * ```
   */
  async intention(
    source: string,
    destination: string,
    opts?: RequestOptions,
  ): Promise<Intention | undefined> {
    return (await this.agent.request({
      method: "GET",
      path: "/v1/connect/intentions/exact",
      query: { source, destination },
      decode: decodeIntention,
      allow404: true,
    }, opts)).value;
  }

  /**
   * `PUT /v1/connect/intentions/exact`: creates or replaces the intention from `source` to
   * `destination` (`*` for any). Resolves to Consul's answer, `true`.
   *
   * @example
   * ```ts
   * import { OperatorClient } from "@meshgate/meshgate/agent";
   * import { startDevAgent } from "@meshgate/meshgate/devagent";
   * await using dev = await startDevAgent();
   * await using operator = new OperatorClient({ address: dev.address });
   * await operator.upsertIntention("*", "db", { Action: "deny", Description: "default deny" });
   * ```
   */
  async upsertIntention(
    source: string,
    destination: string,
    input: IntentionInput,
    opts?: RequestOptions,
  ): Promise<boolean> {
    return (await this.agent.request({
      method: "PUT",
      path: "/v1/connect/intentions/exact",
      query: { source, destination },
      body: { SourceType: "consul", ...input },
      decode: decodeBoolean,
    }, opts)).value;
  }

  /**
   * `DELETE /v1/connect/intentions/exact` (deleting a missing one is not an error).
   *
   * @example
   * ```ts
   * import { OperatorClient } from "@meshgate/meshgate/agent";
   * import { startDevAgent } from "@meshgate/meshgate/devagent";
   * await using dev = await startDevAgent();
   * await using operator = new OperatorClient({ address: dev.address });
   * await operator.upsertIntention("web", "db", { Action: "deny" });
   * await operator.deleteIntention("web", "db");
   * ```
   */
  async deleteIntention(source: string, destination: string, opts?: RequestOptions): Promise<void> {
    await this.agent.request({
      method: "DELETE",
      path: "/v1/connect/intentions/exact",
      query: { source, destination },
      decode: decodeAny,
    }, opts);
  }

  // ---- config entries --------------------------------------------------------------------

  /**
   * `PUT /v1/config`: writes a config entry (resolver, splitter, router, defaults,
   * service-intentions…).
   *
   * @example
   * ```ts
   * import { OperatorClient } from "@meshgate/meshgate/agent";
   * import { startDevAgent } from "@meshgate/meshgate/devagent";
   * await using dev = await startDevAgent();
   * await using operator = new OperatorClient({ address: dev.address });
   * await operator.putConfigEntry({ Kind: "service-resolver", Name: "db", ConnectTimeout: "3s" });
   * const { value: chain } = await operator.agent.discoveryChain("db");
   * console.log(chain.Default === true); // false: the resolver changed it
   * ```
   */
  async putConfigEntry(entry: ConfigEntry, opts?: RequestOptions): Promise<void> {
    await this.agent.request({
      method: "PUT",
      path: "/v1/config",
      body: entry,
      decode: decodeAny,
    }, opts);
  }

  /**
   * `DELETE /v1/config/:kind/:name`.
   *
   * @example
   * ```ts
   * import { OperatorClient } from "@meshgate/meshgate/agent";
   * import { startDevAgent } from "@meshgate/meshgate/devagent";
   * await using dev = await startDevAgent();
   * await using operator = new OperatorClient({ address: dev.address });
   * await operator.putConfigEntry({ Kind: "service-resolver", Name: "db", ConnectTimeout: "3s" });
   * await operator.deleteConfigEntry("service-resolver", "db");
   * ```
   */
  async deleteConfigEntry(kind: string, name: string, opts?: RequestOptions): Promise<void> {
    await this.agent.request({
      method: "DELETE",
      path: `/v1/config/${encodeURIComponent(kind)}/${encodeURIComponent(name)}`,
      decode: decodeAny,
    }, opts);
  }

  // ---- prepared queries ------------------------------------------------------------------

  /**
   * `POST /v1/query`: creates a prepared query and resolves to its ID. Proxies execute it with
   * {@linkcode AgentClient.preparedQuery}.
   *
   * @example
   * ```ts
   * import { OperatorClient } from "@meshgate/meshgate/agent";
   * import { startDevAgent } from "@meshgate/meshgate/devagent";
   * await using dev = await startDevAgent();
   * await using operator = new OperatorClient({ address: dev.address });
   * const id = await operator.createPreparedQuery({ Name: "db-near", Service: { Service: "db" } });
   * console.log((await operator.agent.preparedQuery("db-near")).Service); // db
   * await operator.deletePreparedQuery(id);
   * ```
   */
  async createPreparedQuery(
    definition: PreparedQueryDefinition,
    opts?: RequestOptions,
  ): Promise<string> {
    return (await this.agent.request({
      method: "POST",
      path: "/v1/query",
      body: definition,
      decode: (v) => {
        const id = (v as { ID?: unknown } | null)?.ID;
        if (typeof id !== "string") throw new DecodeFailure("$.ID: expected a string");
        return id;
      },
    }, opts)).value;
  }

  /**
   * `DELETE /v1/query/:id`.
   *
   * @example
   * ```ts
   * import { OperatorClient } from "@meshgate/meshgate/agent";
   * import { startDevAgent } from "@meshgate/meshgate/devagent";
   * await using dev = await startDevAgent();
   * await using operator = new OperatorClient({ address: dev.address });
   * const id = await operator.createPreparedQuery({ Name: "db-q", Service: { Service: "db" } });
   * await operator.deletePreparedQuery(id);
   * ```
   */
  async deletePreparedQuery(id: string, opts?: RequestOptions): Promise<void> {
    await this.agent.request({
      method: "DELETE",
      path: `/v1/query/${encodeURIComponent(id)}`,
      decode: decodeAny,
    }, opts);
  }

  // ---- lifecycle -------------------------------------------------------------------------

  /**
   * Closes the agent client this operator client made from options; one passed in stays open
   * (it is the caller's). Safe to call twice.
   */
  async close(): Promise<void> {
    if (this.#ownsAgent) await this.agent.close();
  }

  /** Same as {@linkcode OperatorClient.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
