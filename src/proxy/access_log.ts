/**
 * The access log: one JSON line per connection when it ends — closed after carrying bytes, or
 * refused with its reason — with direction, listener, peer identity, remote address, bytes each
 * way and duration. Off by default; sampling keeps a fraction of the lines.
 * @module
 */
import type { EventHub } from "../events/hub.ts";
import type { ProxyEvent } from "../events/lifecycle.ts";

/** One access-log record. */
export interface AccessLogRecord {
  /** ISO 8601 time the connection ended. */
  time: string;
  /** `inbound` or `outbound`. */
  direction: "inbound" | "outbound";
  /** `inbound:<service>`, `upstream:<name>`, or `upstream:<name>@<dc>` in another datacenter. */
  listener: string;
  /** `closed` (it carried traffic), `refused` or `revoked`. */
  outcome: "closed" | "refused" | "revoked";
  /** The refusal reason, or the error that ended a closed connection. */
  reason?: string;
  /** The peer: client SPIFFE ID (inbound) or `service@address:port` (outbound). */
  peer?: string;
  /** The remote address of the accepted socket. */
  remote?: string;
  /** Bytes from the other side of the listener (mesh for inbound, upstream for outbound). */
  bytesIn?: number;
  /** Bytes to it. */
  bytesOut?: number;
  /** How long the connection was open, in ms. */
  durationMs?: number;
  /** The worker thread that served it (`-workers`); absent: the main thread. */
  worker?: number;
}

/** Options of {@linkcode startAccessLog}. */
export interface AccessLogOptions {
  /** Where lines go (e.g. a file writer or `console.log`). */
  write: (line: string) => void;
  /** Fraction of connections to log, 0–1. @default {1} */
  sample?: number;
  /** Randomness for sampling (tests pin it). */
  random?: () => number;
}

/**
 * Writes access-log lines for the connections of a proxy until the returned function is called.
 *
 * @example
 * ```ts
 * import { EventHub, type ProxyEvent, startAccessLog } from "@meshgate/meshgate";
 *
 * const events = new EventHub<ProxyEvent>(); // a running proxy's: proxy.events
 * const stop = startAccessLog(events, { write: (line) => console.log(line), sample: 1 });
 * events.publish({
 *   type: "refused",
 *   direction: "inbound",
 *   listener: "inbound:api",
 *   refusal: { reason: "denied", detail: "an intention denies web", peer: "spiffe://…/svc/web" },
 *   at: Date.now(),
 * }); // {"time":"…","direction":"inbound",…,"outcome":"refused","reason":"denied",…}
 * stop();
 * ```
 */
export function startAccessLog(
  events: EventHub<ProxyEvent>,
  options: AccessLogOptions,
): () => void {
  const sample = options.sample ?? 1;
  const random = options.random ?? Math.random;
  return events.subscribe((e) => {
    let record: AccessLogRecord;
    const time = new Date(e.at).toISOString();
    if (e.type === "closed") {
      record = {
        time,
        direction: e.direction,
        listener: e.listener,
        outcome: "closed",
        ...(e.error ? { reason: e.error } : {}),
        peer: e.peer,
        remote: e.remote,
        bytesIn: e.bytesIn,
        bytesOut: e.bytesOut,
        durationMs: Math.round(e.durationMs),
      };
    } else if (e.type === "refused") {
      record = {
        time,
        direction: e.direction,
        listener: e.listener,
        outcome: "refused",
        reason: e.refusal.reason,
        peer: e.refusal.peer,
        remote: e.refusal.remote,
      };
    } else if (e.type === "revoked") {
      record = {
        time,
        direction: e.direction,
        listener: e.listener,
        outcome: "revoked",
        reason: e.reason,
        peer: e.peer,
        remote: e.remote,
      };
    } else return;
    if (e.worker !== undefined) record.worker = e.worker;
    if (sample < 1 && random() >= sample) return;
    options.write(JSON.stringify(record));
  });
}
