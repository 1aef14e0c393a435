/**
 * {@linkcode readCaPath}: every CA certificate under a directory, as the Consul CLI's
 * `-ca-path` / `CONSUL_CAPATH` loads them (hashicorp/go-rootcerts `LoadCAPath`).
 * @module
 */
import { AgentConfigError } from "../agent/errors.ts";
import { parseCertificate } from "../trust/certificate.ts";
import { splitPemCertificates } from "../trust/pem.ts";

/**
 * Reads every file under `path` (recursively, in name order, as Go's `filepath.Walk`), and
 * returns their certificates as one PEM bundle. As in Consul, each file must hold at least one
 * PEM certificate; other PEM blocks in it are skipped. `path` may also name a single file. A
 * symbolic link to a file is read; one to a directory is not entered (no cycles).
 *
 * @example
 * ```ts
 * import { ConnectCA } from "@meshgate/meshgate/devagent";
 * import { readCaPath } from "./ca_path.ts";
 *
 * const dir = await Deno.makeTempDir(); // e.g. /etc/consul.d/ca
 * await Deno.writeTextFile(`${dir}/ca.pem`, (await ConnectCA.create()).activeRoot.RootCert);
 * const ca = await readCaPath(dir); // one PEM bundle of every certificate under dir
 * console.log(ca.startsWith("-----BEGIN CERTIFICATE-----")); // true
 * await Deno.remove(dir, { recursive: true });
 * ```
 * @param path the directory (or file)
 * @param setting the setting to name in errors
 * @throws {AgentConfigError} naming the setting and the file: unreadable, no certificate in a
 * file, or none at all
 */
export async function readCaPath(path: string, setting = "CONSUL_CAPATH"): Promise<string> {
  const fail = (detail: string) => new AgentConfigError(setting, detail);
  const files: string[] = [];
  const walk = async (dir: string) => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(dir));
    } catch (err) {
      throw fail(`cannot read the directory ${dir}: ${(err as Error).message}`);
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const full = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(full);
      else if (e.isFile) files.push(full);
      else if (e.isSymlink) {
        try {
          if ((await Deno.stat(full)).isFile) files.push(full);
        } catch (err) {
          throw fail(`cannot read ${full}: ${(err as Error).message}`);
        }
      }
    }
  };
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (err) {
    throw fail(`cannot read ${path}: ${(err as Error).message}`);
  }
  if (info.isDirectory) await walk(path.replace(/(.)\/+$/, "$1"));
  else files.push(path);
  const bundle: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (err) {
      throw fail(`cannot read ${file}: ${(err as Error).message}`);
    }
    let certs: string[];
    try {
      certs = splitPemCertificates(text);
    } catch (err) {
      throw fail(`${file}: ${(err as Error).message}`);
    }
    // Go's AppendCertsFromPEM keeps the certificates that parse and fails a file with none.
    const good: string[] = [];
    for (const pem of certs) {
      if (await parseCertificate(pem).then(() => true, () => false)) good.push(pem);
    }
    if (!good.length) throw fail(`${file} holds no PEM certificate`);
    bundle.push(...good);
  }
  if (!bundle.length) throw fail(`${path} holds no certificate files`);
  return bundle.join("");
}
