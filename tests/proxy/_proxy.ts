/**
 * Helpers of the proxy tests.
 * @module
 */
import { createAdminApp } from "../../src/admin/app.ts";
import type { Proxy } from "../../src/proxy/proxy.ts";

/** What `/ready` of the proxy's admin app answers: its status and problems. */
export async function readiness(proxy: Proxy): Promise<{ status: number; problems: string[] }> {
  const res = await createAdminApp({ proxy }).request("/ready");
  return { status: res.status, problems: (await res.json()).problems };
}
