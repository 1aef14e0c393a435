// The forger of the forged-chain tests: `openssl` (3.0) run as a separate program, as an attacker
// would, signing whatever we ask with whatever key it is given — a leaf's key included.
import { splitPemCertificates } from "../../src/trust/pem.ts";
import { nth } from "../_helpers.ts";

/** A certificate and its private key, PEM. */
export interface Forged {
  /** The certificate alone (one PEM block). */
  certPem: string;
  /** Its private key. */
  keyPem: string;
}

/** What {@linkcode forge} makes. */
export interface ForgeOptions {
  /** The SPIFFE URI SAN. */
  uri: string;
  /** The signer (its first PEM certificate is used); `undefined` = self-signed. */
  issuer?: { certPem: string; keyPem: string };
  /** @default {one minute ago} */
  notBefore?: Date;
  /** @default {one day after notBefore} */
  notAfter?: Date;
  /** Extended key usages. @default {["serverAuth", "clientAuth"]} */
  eku?: ("serverAuth" | "clientAuth")[];
  /** Mark the certificate as a CA (basicConstraints CA:TRUE, keyCertSign). @default {false} */
  isCa?: boolean;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", {
    args,
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (!out.success) {
    throw new Error(
      `openssl ${args[0]} failed (exit ${out.code}): ${
        new TextDecoder().decode(out.stderr).trim()
      }`,
    );
  }
}

/** `YYYYMMDDHHMMSSZ`, as `openssl ca -startdate/-enddate` take it. */
function asn1Time(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, "").replace(/\.\d+Z$/, "Z");
}

/**
 * Makes an X.509 v1 certificate (no extensions: no SAN, no key usages, no CA flag) whose issuer
 * name is the subject name of `root` — byte for byte, since `openssl x509 -signkey` keeps it —
 * but signed with a throwaway key: it chains to `root` by name only.
 */
export async function forgeV1(root: string): Promise<Forged> {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-forge-" });
  try {
    await Deno.writeTextFile(
      `${dir}/root.pem`,
      nth(splitPemCertificates(root), 0, "root certificate"),
    );
    await openssl(dir, ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"]);
    // The same subject as the root, self-signed with our key.
    await openssl(dir, [
      "x509",
      "-in",
      "root.pem",
      "-signkey",
      "ca.key",
      "-days",
      "1",
      "-out",
      "ca.pem",
    ]);
    await openssl(dir, ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "key.pem"]);
    await openssl(dir, ["req", "-new", "-key", "key.pem", "-subj", "/CN=v1", "-out", "req.pem"]);
    // Without -extfile, `openssl x509 -req` writes a version 1 certificate.
    await openssl(dir, [
      "x509",
      "-req",
      "-in",
      "req.pem",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-set_serial",
      "7",
      "-days",
      "1",
      "-out",
      "cert.pem",
    ]);
    return {
      certPem: await Deno.readTextFile(`${dir}/cert.pem`),
      keyPem: await Deno.readTextFile(`${dir}/key.pem`),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Makes a certificate with `openssl ca`: a fresh P-256 key, the given URI SAN, dates and key
 * usages, signed by `issuer`'s key whatever `issuer` is (`openssl ca` does not check that the
 * issuer is a CA, which is the point), or self-signed.
 */
export async function forge(o: ForgeOptions): Promise<Forged> {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-forge-" });
  try {
    const notBefore = o.notBefore ?? new Date(Date.now() - 60_000);
    const notAfter = o.notAfter ?? new Date(notBefore.getTime() + 86_400_000);
    const eku = o.eku ?? ["serverAuth", "clientAuth"];
    await Deno.writeTextFile(`${dir}/index.txt`, "");
    await Deno.writeTextFile(
      `${dir}/ca.cnf`,
      [
        "[ca]",
        "default_ca = forger",
        "[forger]",
        `dir = ${dir}`,
        "database = $dir/index.txt",
        "new_certs_dir = $dir",
        "serial = $dir/serial",
        "default_md = sha256",
        "policy = anything",
        "unique_subject = no",
        "email_in_dn = no",
        "[anything]",
        "commonName = optional",
        "[ext]",
        `basicConstraints = critical, CA:${o.isCa ? "TRUE" : "FALSE"}`,
        `keyUsage = critical, digitalSignature${o.isCa ? ", keyCertSign, cRLSign" : ""}`,
        ...(eku.length ? [`extendedKeyUsage = ${eku.join(", ")}`] : []),
        `subjectAltName = URI:${o.uri}`,
        "subjectKeyIdentifier = hash",
        "",
      ].join("\n"),
    );
    // A random serial: two forgeries must not look like the same certificate.
    await Deno.writeTextFile(
      `${dir}/serial`,
      crypto.getRandomValues(new Uint8Array(8)).toHex().replace(/^./, "1") + "\n",
    );
    await openssl(dir, ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "key.pem"]);
    await openssl(dir, [
      "req",
      "-new",
      "-key",
      "key.pem",
      "-subj",
      "/CN=forged",
      "-out",
      "req.pem",
    ]);
    const signer = o.issuer
      ? await (async () => {
        await Deno.writeTextFile(
          `${dir}/issuer.pem`,
          nth(splitPemCertificates(o.issuer!.certPem), 0, "issuer certificate"),
        );
        await Deno.writeTextFile(`${dir}/issuer.key`, o.issuer!.keyPem);
        return ["-cert", "issuer.pem", "-keyfile", "issuer.key"];
      })()
      : ["-selfsign", "-keyfile", "key.pem"];
    await openssl(dir, [
      "ca",
      "-batch",
      "-notext",
      "-config",
      "ca.cnf",
      "-extensions",
      "ext",
      "-startdate",
      asn1Time(notBefore),
      "-enddate",
      asn1Time(notAfter),
      ...signer,
      "-in",
      "req.pem",
      "-out",
      "cert.pem",
    ]);
    return {
      certPem: await Deno.readTextFile(`${dir}/cert.pem`),
      keyPem: await Deno.readTextFile(`${dir}/key.pem`),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
