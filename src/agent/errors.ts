/**
 * Errors raised by the agent client. Each says which endpoint failed and why, so a log line or
 * a metric can name the problem without a stack trace.
 * @module
 */

/**
 * The agent answered with an HTTP error status. `message` keeps Consul's own plain-text error.
 *
 * @example
 * ```ts
 * import { AgentError } from "@meshgate/meshgate/agent";
 * const err = new AgentError("GET /v1/agent/service/web", 404, "unknown service ID: web");
 * console.log(err.retryable); // false
 * ```
 */
export class AgentError extends Error {
  /** The body Consul sent, trimmed: its own error text. */
  readonly consulMessage: string;
  /** Method and path, e.g. `GET /v1/agent/connect/ca/roots`. */
  readonly endpoint: string;
  /** The HTTP status the agent answered. */
  readonly status: number;
  /**
   * Creates the error.
   * @param endpoint method and path, e.g. `GET /v1/agent/connect/ca/roots`
   * @param status the HTTP status the agent answered
   * @param consulMessage the plain-text error body
   */
  constructor(endpoint: string, status: number, consulMessage: string, options?: ErrorOptions) {
    const text = consulMessage.trim();
    // Consul names the missing permission in most 403s, not all (health/connect says only
    // "Permission denied"): then say what the endpoint needs.
    const needs = status === 403 && !/lacks permission/.test(text)
      ? neededPermission(endpoint)
      : undefined;
    super(
      `${endpoint}: ${status} ${text || statusText(status)}` +
        (needs ? ` (the ACL token needs ${needs})` : ""),
      options,
    );
    this.name = "AgentError";
    this.endpoint = endpoint;
    this.status = status;
    this.consulMessage = text;
  }

  /** Rate limits and server errors may succeed when tried again later. */
  get retryable(): boolean {
    return this.status === 429 || this.status >= 500;
  }

  /**
   * For a 403, the permission Consul says is missing (e.g. `service:write`), when it names one.
   */
  get missingPermission(): string | undefined {
    if (this.status !== 403) return undefined;
    return /lacks permission '([^']+)'/.exec(this.consulMessage)?.[1];
  }
}

/**
 * The agent could not be reached, or the connection broke before an answer arrived.
 * Always retryable.
 *
 * @example
 * ```ts
 * import { AgentNetworkError } from "@meshgate/meshgate/agent";
 * const err = new AgentNetworkError("GET /v1/agent/self", "connection refused");
 * console.log(err.retryable); // true
 * ```
 */
export class AgentNetworkError extends Error {
  /**
   * Creates the error.
   * @param endpoint method and path
   * @param detail what went wrong at the network level
   */
  constructor(endpoint: string, detail: string, options?: ErrorOptions) {
    super(`${endpoint}: agent unreachable: ${detail}`, options);
    this.name = "AgentNetworkError";
    this.endpoint = endpoint;
  }
  /** Method and path. */
  readonly endpoint: string;
  /** Network failures are always worth another try. */
  get retryable(): boolean {
    return true;
  }
}

/**
 * The agent answered 2xx but the body is not the JSON the endpoint promises.
 * Retryable, since a proxy or a restarting agent can send a broken body once.
 *
 * @example
 * ```ts
 * import { AgentDecodeError } from "@meshgate/meshgate/agent";
 * const err = new AgentDecodeError("GET /v1/agent/connect/ca/roots", "Roots: expected array");
 * console.log(err.message);
 * ```
 */
export class AgentDecodeError extends Error {
  /**
   * Creates the error.
   * @param endpoint method and path
   * @param detail which field was wrong and how
   */
  constructor(endpoint: string, detail: string, options?: ErrorOptions) {
    super(`${endpoint}: malformed response: ${detail}`, options);
    this.name = "AgentDecodeError";
    this.endpoint = endpoint;
    this.detail = detail;
  }
  /** Method and path. */
  readonly endpoint: string;
  /** Which field was wrong and how. */
  readonly detail: string;
  /** A malformed body may be a one-off; try again. */
  get retryable(): boolean {
    return true;
  }
}

/**
 * The agent configuration (environment variables or options) is invalid.
 *
 * @example
 * ```ts
 * import { AgentConfigError } from "@meshgate/meshgate/agent";
 * const err = new AgentConfigError("CONSUL_HTTP_ADDR", "unsupported scheme ftp:");
 * console.log(err.setting); // CONSUL_HTTP_ADDR
 * console.log(err.message); // CONSUL_HTTP_ADDR: unsupported scheme ftp:
 * ```
 */
export class AgentConfigError extends Error {
  /**
   * Creates the error.
   * @param setting the variable or option at fault
   * @param detail what is wrong with it
   */
  constructor(setting: string, detail: string) {
    super(`${setting}: ${detail}`);
    this.name = "AgentConfigError";
    this.setting = setting;
  }
  /** The variable or option at fault. */
  readonly setting: string;
}

/** Any error from the agent client. */
export type AnyAgentError = AgentError | AgentNetworkError | AgentDecodeError;

/**
 * Whether an error is worth retrying: network errors, malformed bodies, 429 and 5xx.
 *
 * @example
 * ```ts
 * import { AgentError, isRetryable } from "@meshgate/meshgate/agent";
 * console.log(isRetryable(new AgentError("GET /x", 503, "No cluster leader"))); // true
 * ```
 */
export function isRetryable(err: unknown): boolean {
  return err instanceof AgentError || err instanceof AgentNetworkError ||
      err instanceof AgentDecodeError
    ? err.retryable
    : false;
}

/**
 * What the ACL token needs for an endpoint meshgate calls, as measured against Consul 1.22.7
 * with `default_policy = "deny"` (tests/integration/acl_test.ts); `undefined` for others.
 */
function neededPermission(endpoint: string): string | undefined {
  const path = endpoint.replace(/^[A-Z]+ /, "").replace(/\?.*$/, "");
  const name = (prefix: string) => {
    const raw = path.slice(prefix.length);
    try {
      return JSON.stringify(decodeURIComponent(raw));
    } catch {
      return JSON.stringify(raw);
    }
  };
  if (path.startsWith("/v1/health/connect/")) {
    return `service:read on ${name("/v1/health/connect/")}; node:read and service:read on ` +
      "its sidecar proxies, or their endpoints are left out";
  }
  if (path.startsWith("/v1/discovery-chain/")) {
    return `service:read on ${name("/v1/discovery-chain/")}`;
  }
  if (path.startsWith("/v1/agent/connect/ca/leaf/")) {
    return `service:write on ${name("/v1/agent/connect/ca/leaf/")}`;
  }
  if (path === "/v1/agent/connect/authorize") {
    return "service:write and intention:read on the target service";
  }
  if (path === "/v1/connect/intentions/match") return "intention:read on the service";
  if (path === "/v1/agent/service/register") {
    return "service:write on the registered name (and on a proxy's destination service)";
  }
  if (path.startsWith("/v1/agent/service/deregister/") || path.startsWith("/v1/agent/check/")) {
    return "service:write on the service";
  }
  if (path.startsWith("/v1/agent/service/")) return "service:read on the service";
  return undefined;
}

function statusText(status: number): string {
  return status === 404 ? "not found" : status === 403 ? "forbidden" : "error";
}
