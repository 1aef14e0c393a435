/**
 * What the admin app reads: the members a {@linkcode Proxy} has, and a Connect-native service
 * has too, so both can be watched through the same app.
 * @module
 */
import type { Proxy } from "../proxy/proxy.ts";

/** A proxy, or anything shaped like one (a Connect-native service). */
export type AdminSubject =
  & Pick<
    Proxy,
    | "phase"
    | "startedAt"
    | "material"
    | "events"
    | "agent"
    | "config"
    | "inbound"
    | "upstreams"
    | "lastEvent"
    | "close"
  >
  & Partial<Pick<Proxy, "problems">>;
