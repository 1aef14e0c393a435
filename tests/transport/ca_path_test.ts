// readCaPath on its own: which files under a directory it reads and in what order, what it
// skips inside a file, links, and the errors that name the setting and the file.
import assert from "node:assert/strict";
import { AgentConfigError } from "../../src/agent/errors.ts";
import { encodePem } from "../../src/trust/pem.ts";
import { readCaPath } from "../../src/transport/ca_path.ts";
import { root } from "../trust/_corpus.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-capath-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const cas = await Promise.all(["A", "B", "C", "D"].map((n) => root(`CA ${n}`).then((c) => c.pem)));
const [A, B, C, D] = cas as [string, string, string, string];

Deno.test("readCaPath: every file, recursively, in name order (as filepath.Walk)", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/b-sub/deeper`, { recursive: true });
    await Deno.writeTextFile(`${dir}/c.pem`, C);
    await Deno.writeTextFile(`${dir}/a.pem`, A);
    await Deno.writeTextFile(`${dir}/b-sub/deeper/x.crt`, B);
    await Deno.writeTextFile(`${dir}/b-sub/z.pem`, D);
    // a.pem, then b-sub/ (deeper/x.crt before z.pem), then c.pem.
    assert.equal(await readCaPath(dir), A + B + D + C);
    assert.equal(await readCaPath(`${dir}/`), A + B + D + C, "a trailing slash is the same");
  });
});

Deno.test("readCaPath: a file's other PEM blocks and unparseable certificates are skipped", async () => {
  await withDir(async (dir) => {
    const key = encodePem("EC PRIVATE KEY", new Uint8Array([1, 2, 3]));
    const broken = encodePem("CERTIFICATE", new Uint8Array([0x30, 0x03, 1, 2, 3]));
    await Deno.writeTextFile(`${dir}/bundle.pem`, `# comment\n${key}${broken}${A}trailing text`);
    assert.equal(await readCaPath(dir), A);
  });
});

Deno.test("readCaPath: a single file is a CA path too", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/one.pem`, A + B);
    assert.equal(await readCaPath(`${dir}/one.pem`), A + B);
  });
});

Deno.test("readCaPath: a link to a file is read; a link to a directory is not entered", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/real`);
    await Deno.writeTextFile(`${dir}/real/a.pem`, A);
    await Deno.symlink(`${dir}/real/a.pem`, `${dir}/link-to-a.pem`);
    await Deno.symlink(dir, `${dir}/real/loop`); // a cycle, if it were followed
    assert.equal(await readCaPath(dir), A + A, "link-to-a.pem, then real/a.pem");
    await Deno.symlink(`${dir}/gone.pem`, `${dir}/z-dangling.pem`);
    await assert.rejects(
      readCaPath(dir),
      (e) => e instanceof AgentConfigError && /cannot read .*z-dangling\.pem/.test(e.message),
    );
  });
});

Deno.test("readCaPath: failures name the setting and the file", async () => {
  await withDir(async (dir) => {
    const check = async (path: string, re: RegExp, setting = "CONSUL_CAPATH") =>
      await assert.rejects(
        setting === "CONSUL_CAPATH" ? readCaPath(path) : readCaPath(path, setting),
        (e) => e instanceof AgentConfigError && e.setting === setting && re.test(e.message),
        path,
      );
    await check(`${dir}/missing`, /^CONSUL_CAPATH: cannot read .*missing/);
    await check(dir, /holds no certificate files$/);
    await Deno.mkdir(`${dir}/empty-sub`);
    await check(dir, /holds no certificate files$/, "-ca-path");
    await Deno.writeTextFile(`${dir}/README`, "not a certificate");
    await check(dir, /README holds no PEM certificate$/);
    await Deno.writeTextFile(`${dir}/README`, A);
    await Deno.writeTextFile(
      `${dir}/bad64.pem`,
      "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
    );
    await check(dir, /bad64\.pem: PEM block "CERTIFICATE" has invalid base64/);
  });
});
