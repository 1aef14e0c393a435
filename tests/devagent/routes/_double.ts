// The double without a server, for route-level tests through hono's app.request().
import { createDevAgent, type DevAgent, type DevAgentOptions } from "../../../src/devagent/app.ts";

/** A double with deterministic timings that closes itself at the end of the scope. */
export async function double(
  options: DevAgentOptions = {},
): Promise<DevAgent & AsyncDisposable> {
  const agent = await createDevAgent({
    blockingJitter: false,
    rotationJitterMs: 0,
    clusterId: "11111111-2222-3333-4444-555555555555",
    ...options,
  });
  return Object.assign(agent, { [Symbol.asyncDispose]: () => agent.close() });
}

/** One answer, read whole. */
export interface Answer {
  status: number;
  text: string;
  headers: Headers;
  // deno-lint-ignore no-explicit-any
  json: any;
}

/** Sends one request to the double's app; `body` is sent as is when a string, else as JSON. */
export async function call(
  agent: DevAgent,
  method: string,
  path: string,
  body?: unknown,
  headers?: Record<string, string>,
): Promise<Answer> {
  const res = await agent.app.request(path, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, headers: res.headers, json };
}

/** The SPIFFE ID of a service in the double's trust domain. */
export function svcUri(agent: DevAgent, service: string): string {
  return `spiffe://${agent.ca.trustDomain}/ns/default/dc/dc1/svc/${service}`;
}
