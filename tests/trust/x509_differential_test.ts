// Differential test (issue #14 point 3): every path of ./_corpus.ts goes through meshgate's
// verifyChain and through Go's crypto/x509 Certificate.Verify (./goverify/main.go); the verdicts
// must agree except where ALLOWED says meshgate is deliberately stricter, and meshgate must give
// the verdict written by hand in the corpus.
import assert from "node:assert/strict";
// From the trust modules themselves, not mod.ts: only the code under test can break this test.
import { parseCertificate } from "../../src/trust/certificate.ts";
import { ChainError, verifyChain } from "../../src/trust/chain.ts";
import { buildCorpus, type CorpusCase } from "./_corpus.ts";

/** A verdict: accepted, or refused with a reason (meshgate's ChainFailure or Go's error). */
interface Verdict {
  ok: boolean;
  reason: string;
}

/**
 * Where meshgate refuses and Go accepts, on purpose. Each entry names its cases, the reason
 * meshgate must give (checked: a refusal for another reason is a disagreement), and why Go
 * accepts.
 */
const ALLOWED: readonly { cases: readonly string[]; meshgate: string; why: string }[] = [
  {
    cases: ["invalid/leaf-is-ca"],
    meshgate: "leaf_is_ca",
    why: "Go never checks the leaf's basicConstraints; a CA certificate is no mesh identity",
  },
  {
    cases: ["fixture/p384-root-presented-as-leaf", "fixture/rsa4096-root-presented-as-leaf"],
    meshgate: "leaf_is_ca",
    why: "Go accepts a leaf that is itself in the root pool (chain of one, no EKU to check)",
  },
  {
    cases: ["invalid/wrong-akid"],
    meshgate: "no_issuer",
    why: "Go uses AKID/SKID only to order candidate issuers, then tries every one with the name",
  },
  {
    cases: ["invalid/rsa1024-leaf-key", "invalid/rsa1024-intermediate-key"],
    meshgate: "weak",
    why: "Go accepts RSA keys of 1024 bits and more; meshgate wants 2048",
  },
  {
    cases: ["names/ip-constraint-uri-only-leaf"],
    meshgate: "name_constraints",
    why: "meshgate evaluates DNS and URI constraints only and refuses a CA that constrains other " +
      "name types (fail closed); Go also evaluates IP and email constraints",
  },
  {
    cases: ["invalid/too-deep"],
    meshgate: "too_long",
    why: "Go has no depth limit; meshgate's default is five certificates",
  },
];

const corpus: CorpusCase[] = await buildCorpus();

async function meshgateVerdict(c: CorpusCase): Promise<Verdict> {
  let leaf, intermediates, roots;
  try {
    leaf = await parseCertificate(c.leaf);
    intermediates = await Promise.all(c.intermediates.map((p) => parseCertificate(p)));
    roots = await Promise.all(c.roots.map((p) => parseCertificate(p)));
  } catch (err) {
    return { ok: false, reason: `parse: ${(err as Error).message}` };
  }
  // A variable, not a literal: `purpose` type-checks before and after the new options land.
  const options = { at: new Date(c.at), purpose: c.usage };
  try {
    await verifyChain(leaf, intermediates, roots, options);
    return { ok: true, reason: "" };
  } catch (err) {
    if (err instanceof ChainError) return { ok: false, reason: err.reason };
    // Anything else is a crash on bad input: report it as such, never as a refusal.
    return { ok: false, reason: `CRASH ${(err as Error)?.name}: ${(err as Error)?.message}` };
  }
}

// --- Go's side ----------------------------------------------------------------------------

const GOVERIFY_DIR = new URL("./goverify/", import.meta.url);

async function findGo(): Promise<string | undefined> {
  for (const candidate of ["go", "/usr/local/go/bin/go"]) {
    try {
      const out = await new Deno.Command(candidate, {
        args: ["version"],
        stdout: "null",
        stderr: "null",
      })
        .output();
      if (out.success) return candidate;
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
  return undefined;
}

const GO = await findGo();
if (!GO) {
  console.error(
    [
      "",
      "#".repeat(78),
      "# SKIP x509 differential: no `go` on PATH nor at /usr/local/go/bin/go.",
      "# meshgate's chain validation was NOT compared with Go's crypto/x509 in this run.",
      "#".repeat(78),
      "",
    ].join("\n"),
  );
}

const GO_ENV = { GOTOOLCHAIN: "local", GOPROXY: "off", GOFLAGS: "-mod=mod", CGO_ENABLED: "0" };

/**
 * Builds goverify once per content of main.go + go.mod and Go version (another Go may judge
 * otherwise), cached under ~/.cache/meshgate/.
 */
async function goverifyBinary(go: string): Promise<string> {
  const version = await new Deno.Command(go, { args: ["version"], env: GO_ENV }).output();
  const source = new Uint8Array([
    ...await Deno.readFile(new URL("main.go", GOVERIFY_DIR)),
    ...await Deno.readFile(new URL("go.mod", GOVERIFY_DIR)),
    ...version.stdout,
  ]);
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", source)).toHex().slice(0, 16);
  const home = Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE") ?? "/tmp";
  const cacheDir = `${home}/.cache/meshgate`;
  const binary = `${cacheDir}/goverify-${hash}`;
  try {
    await Deno.stat(binary);
    return binary;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const tmp = await Deno.makeTempDir({ prefix: "goverify-" });
  try {
    const out = await new Deno.Command(go, {
      args: ["build", "-o", `${tmp}/goverify`, "."],
      cwd: GOVERIFY_DIR,
      env: GO_ENV,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`go build goverify failed:\n${new TextDecoder().decode(out.stderr)}`);
    }
    await Deno.mkdir(cacheDir, { recursive: true });
    await Deno.rename(`${tmp}/goverify`, binary); // atomic: a parallel run sees all or nothing
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
  return binary;
}

async function goVerdicts(go: string, cases: CorpusCase[]): Promise<Map<string, Verdict>> {
  const child = new Deno.Command(await goverifyBinary(go), {
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const input = cases.map(({ name, leaf, intermediates, roots, at, usage }) => ({
    name,
    leaf,
    intermediates,
    roots,
    at,
    usage,
  }));
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(input)));
  await writer.close();
  const out = await child.output();
  if (!out.success) {
    throw new Error(`goverify exited ${out.code}: ${new TextDecoder().decode(out.stderr)}`);
  }
  const verdicts = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    name: string;
    ok: boolean;
    error?: string;
  }[];
  assert.equal(verdicts.length, cases.length, "goverify answered every case");
  return new Map(verdicts.map((v) => [v.name, { ok: v.ok, reason: v.error ?? "" }]));
}

// --- Report --------------------------------------------------------------------------------

function show(v: Verdict): string {
  return v.ok ? "ok" : `refuse (${v.reason})`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(Math.min(widths[i]!, 60))).join("  "))
    .join("\n");
}

// --- Tests ---------------------------------------------------------------------------------

Deno.test("corpus: at least 60 uniquely named cases, many accepted and many refused", () => {
  assert.ok(corpus.length >= 60, `corpus has ${corpus.length} cases`);
  assert.equal(new Set(corpus.map((c) => c.name)).size, corpus.length, "case names are unique");
  const ok = corpus.filter((c) => c.expect === "ok").length;
  const refuse = corpus.length - ok;
  assert.ok(ok >= 25, `only ${ok} cases expect ok`);
  assert.ok(refuse >= 25, `only ${refuse} cases expect refuse`);
  for (const entry of ALLOWED) {
    for (const name of entry.cases) {
      assert.ok(corpus.some((c) => c.name === name), `ALLOWED names a missing case: ${name}`);
    }
  }
});

Deno.test("meshgate gives every corpus case the verdict written by hand", async () => {
  const wrong: string[][] = [];
  for (const c of corpus) {
    const got = await meshgateVerdict(c);
    if (got.ok !== (c.expect === "ok") || got.reason.startsWith("CRASH")) {
      wrong.push([c.name, c.expect, show(got), c.rule]);
    }
  }
  if (wrong.length) console.log(table([["case", "expected", "meshgate", "rule"], ...wrong]));
  assert.deepEqual(wrong, [], `${wrong.length} case(s) not as expected`);
});

Deno.test({
  name: "meshgate and Go's crypto/x509 agree on every corpus case but the ALLOWED ones",
  ignore: !GO,
  async fn() {
    const go = await goVerdicts(GO!, corpus);
    const rows: string[][] = [["case", "expect", "meshgate", "go", ""]];
    const disagreements: string[] = [];
    const allowedSeen = new Set<string>();
    for (const c of corpus) {
      const mine = await meshgateVerdict(c);
      const theirs = go.get(c.name);
      assert.ok(theirs, `goverify has no verdict for ${c.name}`);
      const allowed = ALLOWED.find((a) => a.cases.includes(c.name));
      let mark = "";
      if (mine.ok !== theirs.ok) {
        const excused = allowed && !mine.ok && theirs.ok && mine.reason === allowed.meshgate;
        if (excused) {
          allowedSeen.add(c.name);
          mark = "allowed";
        } else {
          mark = "DISAGREE";
          disagreements.push(
            `${c.name} [${c.rule}]: meshgate ${show(mine)}, go ${show(theirs)}` +
              (allowed ? ` (ALLOWED wants meshgate to refuse with ${allowed.meshgate})` : ""),
          );
        }
      }
      rows.push([c.name, c.expect, show(mine), show(theirs), mark]);
    }
    console.log(table(rows));
    // An ALLOWED entry that no longer differs is stale: it would hide a future regression.
    const stale = ALLOWED.flatMap((a) => a.cases).filter((n) => !allowedSeen.has(n));
    const staleNotes = stale
      .filter((n) => !disagreements.some((d) => d.startsWith(`${n} `)))
      .map((n) => `${n}: listed in ALLOWED but meshgate and Go agree`);
    assert.deepEqual([...disagreements, ...staleNotes], [], "meshgate and Go disagree");
  },
});
