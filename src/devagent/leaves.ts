/**
 * The double's leaf manager: one cached certificate per service name, revalidated on
 * non-blocking reads, renewed at a random point between 60 % and 90 % of its lifetime, and
 * re-issued after a random delay once the active root changes — as Consul's `agent/leafcert`.
 * @module
 */
import type { LeafCert } from "../agent/types.ts";
import type { ConnectCA } from "./ca.ts";
import type { Store } from "./store.ts";
import { type Timer, timer } from "../net/timers.ts";

interface CachedLeaf {
  cert: LeafCert;
  validBefore: number;
  signingKeyId: string;
  /** Its renewal. */
  renewal?: Timer;
}

/** Options of the leaf manager. */
export interface LeavesOptions {
  /** Upper bound of the random delay before re-issuing after a rotation. @default {30000} */
  rotationJitterMs?: number;
}

/** Store topic of a service's leaf. */
export const leafTopic = (service: string): string => `leaf:${service}`;

/** Leaf certificates by service name. */
export class Leaves {
  readonly #store: Store;
  readonly #ca: ConnectCA;
  readonly #options: LeavesOptions;
  readonly #cache = new Map<string, CachedLeaf>();
  readonly #issuing = new Map<string, Promise<CachedLeaf>>();
  readonly #timers = new Set<Timer>();
  #closed = false;
  /** Test hook: the next leaf issued for a service gets this validity instead. */
  readonly overrides: Map<string, { notBefore: Date; ttlMs: number }> = new Map();

  /** Creates it; see the class documentation. */
  constructor(store: Store, ca: ConnectCA, options: LeavesOptions = {}) {
    this.#store = store;
    this.#ca = ca;
    this.#options = options;
  }

  /** The current leaf, issuing one when none is cached, it expired or its signer is stale. */
  async current(service: string): Promise<LeafCert> {
    const cached = this.#cache.get(service);
    const stale = !cached || cached.validBefore <= Date.now() ||
      cached.signingKeyId !== this.#ca.activeRoot.SigningKeyID;
    return stale ? (await this.#issue(service)).cert : cached.cert;
  }

  /** The blocking index of a service's leaf. */
  index(service: string): number {
    return this.#cache.get(service)?.cert.ModifyIndex ?? 0;
  }

  /** Re-issues every cached leaf after a random delay, as after a root rotation. */
  onRotation(): void {
    const jitter = this.#options.rotationJitterMs ?? 30_000;
    for (const service of this.#cache.keys()) {
      this.#later(Math.random() * jitter, () => void this.#issue(service));
    }
  }

  /** Runs `fn` in `ms` unless closed first; the timer is dropped on close. */
  #later(ms: number, fn: () => void): Timer | undefined {
    if (this.#closed) return undefined;
    const later = timer(ms, () => {
      this.#timers.delete(later);
      if (!this.#closed) fn();
    });
    this.#timers.add(later);
    return later;
  }

  #issue(service: string): Promise<CachedLeaf> {
    let pending = this.#issuing.get(service);
    if (pending) return pending;
    pending = (async () => {
      const override = this.overrides.get(service);
      this.overrides.delete(service);
      const issued = await this.#ca.signLeaf(
        service,
        override ? { notBefore: override.notBefore, ttlMs: override.ttlMs } : {},
      );
      // Store first, then bump: waiters re-check their condition during the bump.
      const index = this.#store.index + 1;
      const old = this.#cache.get(service);
      if (old?.renewal) {
        old.renewal.clear();
        this.#timers.delete(old.renewal);
      }
      const entry: CachedLeaf = {
        cert: { ...issued.cert, CreateIndex: index, ModifyIndex: index },
        validBefore: issued.validBefore.getTime(),
        signingKeyId: issued.signingKeyId,
      };
      // Renew at a uniformly random point between 60 % and 90 % of the lifetime.
      const lifetime = issued.validBefore.getTime() - issued.validAfter.getTime();
      const renewAt = issued.validAfter.getTime() + lifetime * (0.6 + Math.random() * 0.3);
      entry.renewal = this.#later(
        Math.max(0, renewAt - Date.now()),
        () => void this.#issue(service),
      );
      this.#cache.set(service, entry);
      this.#store.bump(leafTopic(service));
      return entry;
    })().finally(() => this.#issuing.delete(service));
    this.#issuing.set(service, pending);
    return pending;
  }

  /** Test hook: re-issues a leaf now. */
  async renew(service: string): Promise<LeafCert> {
    return (await this.#issue(service)).cert;
  }

  /** Stops every renewal timer. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const t of this.#timers) t.clear();
    this.#timers.clear();
    await Promise.allSettled([...this.#issuing.values()]);
  }
}
