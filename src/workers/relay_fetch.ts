/**
 * The worker's side of the `AgentRelay` (`./agent_relay.ts`): a `fetch` that sends each call over a
 * `MessagePort` to the relay in the main thread, for an `AgentClient`'s `fetch` option.
 * @module
 */
import {
  authorizeKey,
  decode,
  encode,
  type RelayAnswerMessage,
  type RelayCallMessage,
  toRelayRequest,
  toRelayResponse,
  toResponse,
} from "./agent_relay.ts";
import { AuthorizeJoin, type JoinTable } from "./authorize_join.ts";

/** A `fetch` over a relay port; `close()` ends every call in flight and closes the port. */
export type RelayFetch = typeof fetch & { close: () => void };

/** Options of {@linkcode relayFetch}. */
export interface RelayFetchOptions {
  /**
   * With `transport`: this thread sends its authorize calls itself, joined with identical ones
   * in flight in other threads through the relay's table (`AgentRelay.joinTable`), instead of
   * sending them over the port.
   */
  join?: JoinTable;
  /** This thread's own transport to the agent, for its authorize calls (see `join`). */
  transport?: (input: URL | string, init: RequestInit) => Promise<Response>;
}

/**
 * A `fetch` that asks the `AgentRelay` serving the other side of `port` (see its
 * `serve()`). The answer's status, headers and body are the agent's; a
 * transport error in the main thread rejects with an error of the same name and message; an
 * abort of the caller's signal rejects with its reason and tells the relay, which aborts the
 * agent request once no other caller waits for it. `close()` (called by `AgentClient.close`)
 * rejects the calls still waiting and closes the port.
 *
 * @example
 * ```ts
 * import { AgentClient } from "../agent/client.ts";
 * import { relayFetch } from "./relay_fetch.ts";
 *
 * // In a worker, with the port the pool sent; here, a channel nobody serves.
 * const { port1 } = new MessageChannel();
 * const agent = new AgentClient({ address: "127.0.0.1:8500", fetch: relayFetch(port1) });
 * await agent.close(); // closes the port
 * ```
 */
export function relayFetch(port: MessagePort, options: RelayFetchOptions = {}): RelayFetch {
  let next = 0;
  let closed = false;
  const { transport } = options;
  const join = options.join && transport ? new AuthorizeJoin(options.join) : undefined;
  const waiting = new Map<
    number,
    { resolve: (r: Response) => void; reject: (e: unknown) => void }
  >();
  const onMessage = (e: MessageEvent<string>) => {
    const m = decode<RelayAnswerMessage>(e.data);
    const w = m && waiting.get(m.id);
    if (!m || !w) return;
    waiting.delete(m.id);
    if (m.t === "answer") w.resolve(toResponse(m.response));
    else w.reject(remoteError(m.name, m.message));
  };
  port.addEventListener("message", onMessage as EventListener);
  port.start();
  const send = (message: RelayCallMessage) => port.postMessage(encode(message));

  const relayed = async (input: URL | Request | string, init?: RequestInit) => {
    const signal = init?.signal ?? (input instanceof Request ? input.signal : undefined);
    if (signal?.aborted) throw signal.reason;
    if (closed) throw new TypeError("the agent relay port is closed");
    const request = await toRelayRequest(input, init);
    const key = join && authorizeKey(request);
    if (join && transport && key !== undefined) {
      return toResponse(
        await join.run(
          key,
          async () => await toRelayResponse(await transport(request.url, { ...init, signal })),
          signal,
        ),
      );
    }
    const id = ++next;
    return await new Promise<Response>((resolve, reject) => {
      const onAbort = () => {
        if (!waiting.delete(id)) return;
        send({ t: "abort", id });
        reject(signal!.reason);
      };
      waiting.set(id, {
        resolve: (r) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(r);
        },
        reject: (e) => {
          signal?.removeEventListener("abort", onAbort);
          reject(e);
        },
      });
      signal?.addEventListener("abort", onAbort, { once: true });
      send({ t: "call", id, request });
    });
  };
  const close = () => {
    if (closed) return;
    closed = true;
    for (const [id, w] of waiting) {
      send({ t: "abort", id });
      w.reject(new TypeError("the agent relay port is closed"));
    }
    waiting.clear();
    port.removeEventListener("message", onMessage as EventListener);
    port.close();
    join?.close();
  };
  return Object.assign(relayed as typeof fetch, { close });
}

/** An error that crossed threads: abort and timeout keep their DOMException name. */
function remoteError(name: string, message: string): Error {
  if (name === "AbortError" || name === "TimeoutError") return new DOMException(message, name);
  // fetch rejects with a TypeError when the network fails; keep the name the relay saw.
  const err = new TypeError(message);
  if (name !== "TypeError") err.name = name;
  return err;
}
