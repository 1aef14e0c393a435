// The contract suite (tests/contract/cases.ts) against the in-process Consul test double, on
// every run: a fresh double per case, with the default policy allow (as `consul agent -dev`)
// and, for the cases that hold under either default, deny (as an ACL agent with
// default_policy = "deny").
import { devAgent } from "../_helpers.ts";
import { runContract, type StartedAgent } from "./cases.ts";

async function double(defaultAllow: boolean): Promise<StartedAgent> {
  const dev = await devAgent({ blockingJitter: false, defaultAllow });
  return {
    kind: "double",
    url: dev.url,
    address: dev.address,
    defaultAllow,
    [Symbol.asyncDispose]: () => dev[Symbol.asyncDispose](),
  };
}

runContract({
  label: "test double",
  kind: "double",
  lifetime: "per-case",
  start: () => double(true),
});

runContract({
  label: "test double, default deny",
  kind: "double",
  lifetime: "per-case",
  onlyAnyDefaultPolicy: true,
  start: () => double(false),
});
