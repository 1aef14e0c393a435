// The contract suite (tests/contract/cases.ts) against a real `consul agent -dev` (built by
// `deno task consul:build`): one agent for every case (it proves each case cleans up after
// itself), and an ACL agent with default_policy = "deny" (management token) for the cases that
// hold under either default. Every difference the real agent shows is fixed in the double, or
// named in the suite's skip list; where Consul's behaviour is version-specific, the case says so.
import { runContract, type StartedAgent } from "../contract/cases.ts";
import { announceSkip, consulBinary, startConsul, startConsulWithAcls } from "./_consul.ts";

const binary = consulBinary();
if (!binary) announceSkip("tests/integration/contract_test.ts");

runContract({
  label: "real consul agent",
  kind: "consul",
  lifetime: "shared",
  ignore: !binary,
  async start(): Promise<StartedAgent> {
    const consul = await startConsul();
    return {
      kind: "consul",
      url: consul.url,
      address: consul.address,
      defaultAllow: true,
      logs: consul.logs,
      [Symbol.asyncDispose]: () => consul.stop(),
    };
  },
});

runContract({
  label: "real consul agent, ACLs with default policy deny",
  kind: "consul",
  lifetime: "shared",
  onlyAnyDefaultPolicy: true,
  ignore: !binary,
  async start(): Promise<StartedAgent> {
    const consul = await startConsulWithAcls();
    return {
      kind: "consul",
      url: consul.url,
      address: consul.address,
      token: consul.managementToken,
      defaultAllow: false,
      logs: consul.logs,
      [Symbol.asyncDispose]: () => consul.stop(),
    };
  },
});
