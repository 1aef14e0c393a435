// Which ACL token reaches the agent, from the proxy's flags and the CONSUL_* variables, checked
// against a server that records X-Consul-Token: the Consul CLI's precedence (-token-file, -token,
// CONSUL_HTTP_TOKEN_FILE, CONSUL_HTTP_TOKEN), and a token file re-read when it changes. When a
// Consul binary is built, the same table is checked against the real `consul` CLI too.
import assert from "node:assert/strict";
import { AgentConfigError } from "../../src/agent/errors.ts";
import { parseFlags } from "../../src/cli/flags.ts";
import { createDenoAgentClient } from "../../src/transport/agent_client.ts";
import { announceSkip, consulBinary } from "../integration/_consul.ts";

/** Answers every request with `{}` and records the token each one carried. */
function captureServer() {
  const tokens: (string | null)[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    tokens.push(req.headers.get("x-consul-token"));
    // 404 for the Consul CLI's `kv get` (it then exits 1 at once), {} for our requests.
    return req.url.includes("/v1/kv/") ? new Response("", { status: 404 }) : Response.json({});
  });
  return {
    address: `127.0.0.1:${server.addr.port}`,
    tokens,
    close: () => server.shutdown(),
  };
}

interface Case {
  name: string;
  flags: { token?: string; tokenFile?: "A" | "B" | "empty" };
  env: { CONSUL_HTTP_TOKEN?: string; CONSUL_HTTP_TOKEN_FILE?: "A" | "B" | "empty" };
  sent: string | null;
}

// File A holds "file-a-token", B "file-b-token", "empty" nothing but a newline.
const CASES: Case[] = [
  { name: "nothing", flags: {}, env: {}, sent: null },
  { name: "-token", flags: { token: "flag-token" }, env: {}, sent: "flag-token" },
  { name: "-token-file", flags: { tokenFile: "A" }, env: {}, sent: "file-a-token" },
  {
    name: "-token-file wins over -token",
    flags: { token: "flag-token", tokenFile: "A" },
    env: {},
    sent: "file-a-token",
  },
  {
    name: "-token-file wins over CONSUL_HTTP_TOKEN",
    flags: { tokenFile: "A" },
    env: { CONSUL_HTTP_TOKEN: "env-token" },
    sent: "file-a-token",
  },
  {
    name: "CONSUL_HTTP_TOKEN",
    flags: {},
    env: { CONSUL_HTTP_TOKEN: "env-token" },
    sent: "env-token",
  },
  {
    name: "CONSUL_HTTP_TOKEN_FILE",
    flags: {},
    env: { CONSUL_HTTP_TOKEN_FILE: "B" },
    sent: "file-b-token",
  },
  {
    name: "CONSUL_HTTP_TOKEN_FILE wins over CONSUL_HTTP_TOKEN",
    flags: {},
    env: { CONSUL_HTTP_TOKEN: "env-token", CONSUL_HTTP_TOKEN_FILE: "B" },
    sent: "file-b-token",
  },
  {
    name: "-token wins over CONSUL_HTTP_TOKEN_FILE",
    flags: { token: "flag-token" },
    env: { CONSUL_HTTP_TOKEN_FILE: "B" },
    sent: "flag-token",
  },
  {
    name: "-token wins over CONSUL_HTTP_TOKEN",
    flags: { token: "flag-token" },
    env: { CONSUL_HTTP_TOKEN: "env-token" },
    sent: "flag-token",
  },
  {
    name: "-token-file wins over CONSUL_HTTP_TOKEN_FILE",
    flags: { tokenFile: "A" },
    env: { CONSUL_HTTP_TOKEN_FILE: "B" },
    sent: "file-a-token",
  },
  {
    name: "all four: -token-file",
    flags: { token: "flag-token", tokenFile: "A" },
    env: { CONSUL_HTTP_TOKEN: "env-token", CONSUL_HTTP_TOKEN_FILE: "B" },
    sent: "file-a-token",
  },
  {
    name: "an empty -token-file falls back to -token",
    flags: { token: "flag-token", tokenFile: "empty" },
    env: {},
    sent: "flag-token",
  },
  {
    name: "an empty -token-file falls back to CONSUL_HTTP_TOKEN",
    flags: { tokenFile: "empty" },
    env: { CONSUL_HTTP_TOKEN: "env-token" },
    sent: "env-token",
  },
  {
    name: "an empty CONSUL_HTTP_TOKEN_FILE falls back to CONSUL_HTTP_TOKEN",
    flags: {},
    env: { CONSUL_HTTP_TOKEN: "env-token", CONSUL_HTTP_TOKEN_FILE: "empty" },
    sent: "env-token",
  },
];

async function tokenFiles() {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-token-" });
  await Deno.writeTextFile(`${dir}/A`, "file-a-token\n");
  await Deno.writeTextFile(`${dir}/B`, "  file-b-token\n");
  await Deno.writeTextFile(`${dir}/empty`, "\n");
  return dir;
}

function argsAndEnv(c: Case, dir: string, address: string) {
  const args = ["-http-addr", address];
  if (c.flags.token) args.push("-token", c.flags.token);
  if (c.flags.tokenFile) args.push("-token-file", `${dir}/${c.flags.tokenFile}`);
  const env: Record<string, string> = {};
  if (c.env.CONSUL_HTTP_TOKEN) env.CONSUL_HTTP_TOKEN = c.env.CONSUL_HTTP_TOKEN;
  if (c.env.CONSUL_HTTP_TOKEN_FILE) {
    env.CONSUL_HTTP_TOKEN_FILE = `${dir}/${c.env.CONSUL_HTTP_TOKEN_FILE}`;
  }
  return { args, env };
}

Deno.test("token precedence: the proxy's flags and CONSUL_* variables, as the Consul CLI", async (t) => {
  const capture = captureServer();
  const dir = await tokenFiles();
  try {
    for (const c of CASES) {
      await t.step(c.name, async () => {
        const { args, env } = argsAndEnv(c, dir, capture.address);
        const opts = parseFlags([...args, "-sidecar-for", "web-1"], env);
        const agent = await createDenoAgentClient({ ...opts.agent, env });
        try {
          capture.tokens.length = 0;
          await agent.request({ method: "GET", path: "/v1/agent/self", decode: (j) => j });
          assert.deepEqual(capture.tokens, [c.sent]);
          if (c.sent) assert.ok(!Deno.inspect(agent).includes(c.sent), "no token in inspect");
        } finally {
          await agent.close();
        }
      });
    }
  } finally {
    await capture.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "token precedence: the real Consul CLI sends the same token in every case",
  ignore: !consulBinary(),
  async fn(t) {
    const consul = consulBinary()!;
    const capture = captureServer();
    const dir = await tokenFiles();
    try {
      for (const c of CASES) {
        await t.step(c.name, async () => {
          const { args, env } = argsAndEnv(c, dir, capture.address);
          capture.tokens.length = 0;
          const out = await new Deno.Command(consul, {
            args: ["kv", "get", ...args, "meshgate-probe"],
            env: { PATH: Deno.env.get("PATH") ?? "", HOME: dir, ...env },
            clearEnv: true,
            stdout: "null",
            stderr: "piped",
          }).output();
          assert.deepEqual(
            capture.tokens,
            [c.sent],
            `consul kv get: ${new TextDecoder().decode(out.stderr)}`,
          );
        });
      }
    } finally {
      await capture.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
if (!consulBinary()) announceSkip("tests/transport/token_test.ts (the Consul CLI comparison)");

Deno.test("token file: a token changed on disk is sent by the next request, no restart", async () => {
  const capture = captureServer();
  const dir = await Deno.makeTempDir({ prefix: "meshgate-token-" });
  const path = `${dir}/token`;
  await Deno.writeTextFile(path, "token-1\n");
  const agent = await createDenoAgentClient({
    address: capture.address,
    tokenFile: path,
    token: "fallback-token",
    env: {},
  });
  const sent = async () => {
    capture.tokens.length = 0;
    await agent.request({ method: "GET", path: "/v1/agent/self", decode: (j) => j });
    return capture.tokens[0];
  };
  try {
    assert.equal(await sent(), "token-1");
    // Rewritten in place (same length: only the content and mtime change).
    await Deno.writeTextFile(path, "token-2\n");
    assert.equal(await sent(), "token-2");
    // Replaced by a rename, as Kubernetes and Vault agent do.
    await Deno.writeTextFile(`${dir}/next`, "token-three");
    await Deno.rename(`${dir}/next`, path);
    assert.equal(await sent(), "token-three");
    // Gone for a moment mid-rotation: the last token is kept.
    await Deno.remove(path);
    assert.equal(await sent(), "token-three");
    // Emptied: the fallback, as the Consul CLI does with an empty file.
    await Deno.writeTextFile(path, "");
    assert.equal(await sent(), "fallback-token");
    await Deno.writeTextFile(path, "token-4");
    // Concurrent requests all carry the new token.
    capture.tokens.length = 0;
    await Promise.all(
      [1, 2, 3].map(() =>
        agent.request({ method: "GET", path: "/v1/agent/self", decode: (j) => j })
      ),
    );
    assert.deepEqual(capture.tokens, ["token-4", "token-4", "token-4"]);
  } finally {
    await agent.close();
    await capture.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("token file: an unreadable file at start is a clear error naming the setting", async () => {
  await assert.rejects(
    createDenoAgentClient({ env: { CONSUL_HTTP_TOKEN_FILE: "/nonexistent/meshgate-token" } }),
    (e) =>
      e instanceof AgentConfigError &&
      /CONSUL_HTTP_TOKEN_FILE: cannot read \/nonexistent\/meshgate-token/.test(e.message),
  );
  await assert.rejects(
    createDenoAgentClient({ tokenFile: "/nonexistent/t", env: {} }),
    /tokenFile: cannot read \/nonexistent\/t/,
  );
});
