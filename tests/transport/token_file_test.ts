// TokenFile on its own: what it reads, when it reads again (a stamp of mtime, size and inode,
// and every time while the file is younger than 2 s), the fallback, and a file gone for a
// moment. (tests/transport/token_test.ts checks the precedence through the whole client.)
import assert from "node:assert/strict";
import { AgentConfigError } from "../../src/agent/errors.ts";
import { TokenFile } from "../../src/transport/token_file.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-tokenfile-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const HOUR_AGO = () => new Date(Date.now() - 3600_000);

/** Writes `text` and sets the file's mtime to `mtime`. */
async function write(path: string, text: string, mtime: Date): Promise<void> {
  await Deno.writeTextFile(path, text);
  await Deno.utime(path, mtime, mtime);
}

Deno.test("TokenFile: the content trimmed; an empty file gives the fallback", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/token`;
    await write(path, "  abc-123\n\n", HOUR_AGO());
    const file = await TokenFile.open(path, { fallback: "fallback" });
    assert.equal(await file.current(), "abc-123");
    assert.equal(file.path, path);
    await write(path, " \n", new Date());
    assert.equal(await file.current(), "fallback");
    const noFallback = await TokenFile.open(path);
    assert.equal(await noFallback.current(), undefined);
  });
});

Deno.test("TokenFile: an old file is read again only when its stamp changes", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/token`;
    const old = HOUR_AGO();
    await write(path, "token-1", old);
    const file = await TokenFile.open(path);
    assert.equal(await file.current(), "token-1");
    // Same size, same mtime, same inode: the stamp says unchanged, so no read (the cost of one
    // stat per request instead of a read).
    await write(path, "token-2", old);
    assert.equal(await file.current(), "token-1");
    // A new mtime: read again.
    await Deno.utime(path, new Date(old.getTime() + 1000), new Date(old.getTime() + 1000));
    assert.equal(await file.current(), "token-2");
    // A new size with the old mtime: read again too.
    await write(path, "token-three", old);
    assert.equal(await file.current(), "token-three");
  });
});

Deno.test("TokenFile: a file younger than 2 s is read on every check (coarse mtimes)", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/token`;
    const fresh = new Date();
    await write(path, "token-1", fresh);
    const file = await TokenFile.open(path);
    // Rewritten with the same size and the same mtime: only the "racy" rule can see it.
    await write(path, "token-2", fresh);
    assert.equal(await file.current(), "token-2");
  });
});

Deno.test("TokenFile: replaced by a rename, the new inode is read", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/token`;
    const old = HOUR_AGO();
    await write(path, "token-1", old);
    const file = await TokenFile.open(path);
    await write(`${dir}/next`, "token-2", old); // same size and mtime, another inode
    await Deno.rename(`${dir}/next`, path);
    assert.equal(await file.current(), "token-2");
  });
});

Deno.test("TokenFile: gone or unreadable after the first load keeps the last token", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/token`;
    await write(path, "token-1", HOUR_AGO());
    const file = await TokenFile.open(path, { fallback: "fb" });
    await Deno.remove(path);
    assert.equal(await file.current(), "token-1");
    await Deno.mkdir(path); // a directory where the file was: unreadable
    assert.equal(await file.current(), "token-1");
    await Deno.remove(path);
    await write(path, "token-2", new Date());
    assert.equal(await file.current(), "token-2", "and picks the file up again");
  });
});

Deno.test("TokenFile.open: an unreadable file is an AgentConfigError naming the setting", async () => {
  await withDir(async (dir) => {
    await assert.rejects(
      TokenFile.open(`${dir}/missing`, { setting: "CONSUL_HTTP_TOKEN_FILE" }),
      (e) =>
        e instanceof AgentConfigError && e.setting === "CONSUL_HTTP_TOKEN_FILE" &&
        e.message.startsWith(`CONSUL_HTTP_TOKEN_FILE: cannot read ${dir}/missing: `),
    );
    await assert.rejects(TokenFile.open(dir), /^AgentConfigError: tokenFile: cannot read /);
  });
});

Deno.test("TokenFile: concurrent checks share one stat", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/token`;
    await write(path, "token-1", HOUR_AGO());
    const file = await TokenFile.open(path);
    const stat = Deno.stat;
    let stats = 0;
    Deno.stat = ((p: string | URL) => (stats++, stat(p))) as typeof Deno.stat;
    try {
      const all = await Promise.all([file.current(), file.current(), file.current()]);
      assert.deepEqual(all, ["token-1", "token-1", "token-1"]);
      assert.equal(stats, 1);
      await file.current();
      assert.equal(stats, 2, "the next check stats again");
    } finally {
      Deno.stat = stat;
    }
  });
});

Deno.test("TokenFile never shows its token when inspected", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/token`;
    await write(path, "s3cr3t-token", HOUR_AGO());
    const file = await TokenFile.open(path);
    assert.equal(Deno.inspect(file), `TokenFile(${path})`);
    assert.ok(!JSON.stringify(file).includes("s3cr3t"));
  });
});
