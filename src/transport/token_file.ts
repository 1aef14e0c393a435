/**
 * The ACL token from a file (`-token-file`, `CONSUL_HTTP_TOKEN_FILE`), re-read when the file
 * changes: a token rotated on disk (a Kubernetes secret, Vault agent's sink) is picked up by the
 * next request, without a restart. Deno-specific (it reads the file system).
 * @module
 */
import { AgentConfigError } from "../agent/errors.ts";

/** What identifies one version of the file: a rewrite or a replaced symlink changes it. */
function stamp(info: Deno.FileInfo): string {
  return `${info.mtime?.getTime() ?? ""}:${info.size}:${info.ino ?? ""}:${info.dev}`;
}

/**
 * A token file, checked with one `stat` per request and read again only when its modification
 * time, size or inode changed (or it changed less than 2 s before the last read). An empty file yields the fallback token (as the Consul CLI sends
 * `-token` or `CONSUL_HTTP_TOKEN` then). A file that cannot be read after the first load keeps
 * the last token (a rotation that replaces the file is not an outage). `createDenoAgentClient`
 * hands one to the client as its `tokenProvider`.
 */
export class TokenFile {
  /** The file's path. */
  readonly path: string;
  readonly #setting: string;
  readonly #fallback?: string;
  #token?: string;
  #stamp = "";
  #racy = true;
  #checking?: Promise<string | undefined>;

  private constructor(path: string, setting: string, fallback?: string) {
    this.path = path;
    this.#setting = setting;
    this.#fallback = fallback;
  }

  /**
   * Reads the file once.
   * @param path the token file
   * @param options `setting`: the name errors give (e.g. `CONSUL_HTTP_TOKEN_FILE`); `fallback`:
   * the token for an empty file
   * @throws {AgentConfigError} when the file cannot be read
   */
  static async open(
    path: string,
    options: { setting?: string; fallback?: string } = {},
  ): Promise<TokenFile> {
    const file = new TokenFile(path, options.setting ?? "tokenFile", options.fallback);
    try {
      await file.#reload(await Deno.stat(path));
    } catch (err) {
      throw new AgentConfigError(file.#setting, `cannot read ${path}: ${(err as Error).message}`);
    }
    return file;
  }

  /** The token to send now: the file's content (trimmed), or the fallback when it is empty. */
  current(): Promise<string | undefined> {
    // Concurrent requests share one stat.
    this.#checking ??= this.#check().finally(() => (this.#checking = undefined));
    return this.#checking;
  }

  async #check(): Promise<string | undefined> {
    try {
      const info = await Deno.stat(this.path);
      if (this.#racy || stamp(info) !== this.#stamp) await this.#reload(info);
    } catch {
      // Gone or unreadable for a moment (being replaced): keep the last token.
    }
    return this.#token || this.#fallback;
  }

  async #reload(info: Deno.FileInfo): Promise<void> {
    const text = await Deno.readTextFile(this.path);
    this.#token = text.trim() || undefined;
    this.#stamp = stamp(info);
    // Modification times have a coarse grain: a same-size rewrite just after this read could keep
    // the same stamp. While the file is that fresh, read it again on each check (as git does for
    // its "racily clean" index entries).
    this.#racy = !info.mtime || Date.now() - info.mtime.getTime() < 2000;
  }

  /** Keeps the token out of `console.log` and `Deno.inspect`. */
  [Symbol.for("Deno.customInspect")](): string {
    return `TokenFile(${this.path})`;
  }
}
