/**
 * The double's intentions (by-name API) and the authorize decision of Consul's §4: first match
 * by precedence, L7 means deny, and a default when nothing matches (decided by the double's own
 * {@linkcode authorizeByIntentions}, not by the proxy's code it is meant to check).
 * @module
 */
import type { AuthorizeResult, Intention } from "../agent/types.ts";
import {
  authorizeByIntentions,
  compareByPrecedence,
  intentionPrecedence,
} from "./intention_decision.ts";
import { parseSpiffeId, SpiffeIdError } from "../trust/spiffe.ts";
import { BadRequest, type Schema, strictDecode } from "./strict.ts";
import type { Store } from "./store.ts";

const INTENTION_SCHEMA: Schema = {
  ID: true,
  Description: true,
  SourceNS: true,
  SourceName: true,
  DestinationNS: true,
  DestinationName: true,
  SourcePartition: true,
  DestinationPartition: true,
  SourcePeer: true,
  SourceSamenessGroup: true,
  SourceType: true,
  Action: true,
  Permissions: true,
  JWT: true,
  Meta: true,
  Precedence: true,
  CreateIndex: true,
  ModifyIndex: true,
  CreatedAt: true,
  UpdatedAt: true,
  Hash: true,
  LegacyID: true,
  LegacyMeta: true,
  LegacyCreateTime: true,
  LegacyUpdateTime: true,
  DefaultAddr: true,
  DefaultPort: true,
};
const AUTHORIZE_SCHEMA: Schema = {
  Target: true,
  ClientCertURI: true,
  ClientCertSerial: true,
  Namespace: true,
  Partition: true,
};

/** The store topic intentions bump. */
export const INTENTIONS_TOPIC = "intentions";

/** Precedence of a by-name intention (namespace `default` on both sides). */
function precedence(source: string, destination: string): number {
  return intentionPrecedence({
    SourceNS: "default",
    SourceName: source,
    DestinationNS: "default",
    DestinationName: destination,
  });
}

function validateName(kind: string, name: string | null): string {
  if (!name) throw new BadRequest(`required query parameter '${kind}' not set`, 500);
  if (name.split("/").length > 3) {
    throw new BadRequest(`${kind} "${name}" is invalid: input can contain at most two '/'`, 500);
  }
  return name;
}

/** Intentions and authorization of the double. */
export class Intentions {
  readonly #store: Store;
  readonly #byPair = new Map<string, Intention>();
  /** What authorize answers when no intention matches. */
  defaultAllow: boolean;

  /** Creates it; see the class documentation. */
  constructor(store: Store, defaultAllow: boolean) {
    this.#store = store;
    this.defaultAllow = defaultAllow;
  }

  /** `PUT /v1/connect/intentions/exact`. */
  upsert(source: string | null, destination: string | null, rawBody: unknown): void {
    const src = validateName("source", source);
    const dst = validateName("destination", destination);
    const body = strictDecode(rawBody, INTENTION_SCHEMA) as Partial<Intention>;
    if (body.Permissions?.length && body.Action) {
      throw new BadRequest("Action must be empty when Permissions are present", 500);
    }
    if (!body.Permissions?.length && body.Action !== "allow" && body.Action !== "deny") {
      throw new BadRequest(`Action must be set to 'allow' or 'deny'`, 500);
    }
    if (body.Permissions?.length) {
      throw new BadRequest(
        `service "${dst}" has protocol "tcp", which is incompatible with L7 intentions permissions`,
        500,
      );
    }
    const key = `${src}\u0000${dst}`;
    const existing = this.#byPair.get(key);
    // Store first, then bump: waiters re-check their condition during the bump.
    const index = this.#store.index + 1;
    const intention: Intention = {
      ...(body.Description ? { Description: body.Description } : {}),
      SourceNS: "default",
      SourceName: src,
      DestinationNS: "default",
      DestinationName: dst,
      SourceType: "consul",
      Action: body.Action,
      Precedence: precedence(src, dst),
      CreateIndex: existing?.CreateIndex ?? index,
      ModifyIndex: index,
    };
    this.#byPair.set(key, intention);
    this.#store.bump(INTENTIONS_TOPIC);
  }

  /**
   * A `service-intentions` config entry: replaces every intention of `destination` with
   * `sources` in one write, as Consul stores them.
   */
  replaceDestination(
    destination: string,
    sources: { Name?: string; Action?: string; Description?: string }[],
  ): void {
    for (const s of sources) {
      if (!s.Name) throw new BadRequest("Sources[].Name is required", 500);
      if (s.Action !== "allow" && s.Action !== "deny") {
        throw new BadRequest(`Action must be set to 'allow' or 'deny'`, 500);
      }
    }
    const index = this.#store.index + 1;
    for (const [key, ixn] of this.#byPair) {
      if (ixn.DestinationName === destination) this.#byPair.delete(key);
    }
    for (const s of sources) {
      this.#byPair.set(`${s.Name}\u0000${destination}`, {
        ...(s.Description ? { Description: s.Description } : {}),
        SourceNS: "default",
        SourceName: s.Name!,
        DestinationNS: "default",
        DestinationName: destination,
        SourceType: "consul",
        Action: s.Action as "allow" | "deny",
        Precedence: precedence(s.Name!, destination),
        CreateIndex: index,
        ModifyIndex: index,
      });
    }
    this.#store.bump(INTENTIONS_TOPIC);
  }

  /** `GET …/exact`; `undefined` when missing. */
  get(source: string | null, destination: string | null): Intention | undefined {
    return this.#byPair.get(
      `${validateName("source", source)}\u0000${validateName("destination", destination)}`,
    );
  }

  /** `DELETE …/exact`: idempotent. */
  delete(source: string | null, destination: string | null): void {
    const key = `${validateName("source", source)}\u0000${
      validateName("destination", destination)
    }`;
    if (this.#byPair.delete(key)) this.#store.bump(INTENTIONS_TOPIC);
  }

  /** Every intention, highest precedence first, with Consul's tie-break (byte order of names). */
  list(): Intention[] {
    return [...this.#byPair.values()].sort(compareByPrecedence);
  }

  /** `POST /v1/agent/connect/authorize`. */
  authorize(rawBody: unknown): AuthorizeResult {
    const body = strictDecode(rawBody, AUTHORIZE_SCHEMA) as {
      Target?: string;
      ClientCertURI?: string;
      Namespace?: string;
      Partition?: string;
    };
    if (body.Namespace !== undefined || body.Partition !== undefined) {
      throw new BadRequest(
        `Request decode failed: json: unknown field "${
          body.Namespace !== undefined ? "Namespace" : "Partition"
        }"`,
      );
    }
    if (!body.Target) throw new BadRequest("Target service must be specified");
    let id;
    try {
      id = parseSpiffeId(body.ClientCertURI ?? "");
    } catch (err) {
      if (err instanceof SpiffeIdError) {
        throw new BadRequest("ClientCertURI not a valid Connect identifier");
      }
      throw err;
    }
    if (id.kind !== "service") {
      throw new BadRequest("ClientCertURI not a valid Service identifier");
    }
    if (id.partition !== "default") {
      throw new BadRequest(`Mismatched partitions: "${id.partition}" != "default"`);
    }
    return authorizeByIntentions(
      this.list(),
      { name: body.Target, namespace: "default", partition: "default" },
      { name: id.service, namespace: id.namespace, partition: id.partition },
      this.defaultAllow,
    );
  }
}
