// verifyChain, case by case: which ChainFailure each broken rule gives, what path an accepted
// chain resolves with, and how the search treats strangers, duplicates, twins and depth. The
// Go differential (x509_differential_test.ts) checks only accept/refuse; these check the reason.
import assert from "node:assert/strict";
import { type CertificateInfo, parseCertificate } from "../../src/trust/certificate.ts";
import { ChainError, type ChainFailure, verifyChain } from "../../src/trust/chain.ts";
import { x509 } from "../../src/trust/_x509.ts";
import {
  corrupt,
  intermediate,
  type Issued,
  leaf,
  OID,
  root,
  type Spec,
  unknownExtension,
} from "./_corpus.ts";

/** Inside every generated certificate's validity (leaves 2026, CAs 2025–2035). */
const AT = new Date("2026-06-01T00:00:00Z");
const KU = x509.KeyUsageFlags;
const WEB = "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/web";

async function info(c: Issued | string): Promise<CertificateInfo> {
  return await parseCertificate(typeof c === "string" ? c : c.pem);
}

async function verify(
  l: Issued | string,
  intermediates: (Issued | string)[],
  roots: (Issued | string)[],
  options: Parameters<typeof verifyChain>[3] = {},
): Promise<CertificateInfo[]> {
  return await verifyChain(
    await info(l),
    await Promise.all(intermediates.map(info)),
    await Promise.all(roots.map(info)),
    { at: AT, ...options },
  );
}

/** Resolves with the ChainError the verification rejects with (fails if it resolves). */
async function refusal(promise: Promise<unknown>): Promise<ChainError> {
  const err = await promise.then(() => undefined, (e) => e);
  assert.ok(err instanceof ChainError, `expected a ChainError, got ${err}`);
  return err;
}

async function assertRefused(
  promise: Promise<unknown>,
  reason: ChainFailure,
  message?: RegExp,
): Promise<void> {
  const err = await refusal(promise);
  assert.equal(err.reason, reason, err.message);
  assert.match(err.message, /^chain: /);
  if (message) assert.match(err.message, message);
}

/** CAs without URI SANs, so that messages name them by their CN. */
const ca = (name: string, spec: Spec = {}) => root(name, { uris: [], ...spec });
const sub = (name: string, issuer: Issued, spec: Spec = {}) =>
  intermediate(name, issuer, { uris: [], ...spec });

const names = (path: CertificateInfo[]) => path.map((c) => c.subject || c.uris[0]);

Deno.test("verifyChain resolves with the path leaf first, root last", async () => {
  const r = await ca("Root");
  const i1 = await sub("Int 1", r);
  const i2 = await sub("Int 2", i1);
  const l = await leaf(i2);
  const path = await verify(l, [i1, i2], [r]);
  assert.deepEqual(names(path), [WEB, "CN=Int 2", "CN=Int 1", "CN=Root"]);
  assert.deepEqual(names(await verify(await leaf(r), [], [r])).slice(1), ["CN=Root"]);
});

Deno.test("verifyChain ignores the order of intermediates, duplicates and strangers", async () => {
  const r = await ca("Root");
  const i1 = await sub("Int 1", r);
  const i2 = await sub("Int 2", i1);
  const stranger = await sub("Stranger", await ca("Other Root"));
  const l = await leaf(i2);
  const path = await verify(l, [stranger, i1, i2, i1, stranger, i2], [r]);
  assert.deepEqual(names(path).slice(1), ["CN=Int 2", "CN=Int 1", "CN=Root"]);
});

Deno.test("verifyChain: validity is inclusive at both ends, checked for every certificate", async () => {
  const r = await ca("Root");
  const notBefore = new Date("2026-03-01T00:00:00Z");
  const notAfter = new Date("2026-04-01T00:00:00Z");
  const l = await leaf(r, { notBefore, notAfter });
  await verify(l, [], [r], { at: notBefore });
  await verify(l, [], [r], { at: notAfter });
  await assertRefused(
    verify(l, [], [r], { at: new Date(notAfter.getTime() + 1000) }),
    "expired",
    /svc\/web expired at 2026-04-01T00:00:00.000Z/,
  );
  await assertRefused(
    verify(l, [], [r], { at: new Date(notBefore.getTime() - 1000) }),
    "not_yet_valid",
    /not valid before 2026-03-01/,
  );
  // An expired intermediate under a valid leaf.
  const old = await sub("Old Int", r, { notAfter: new Date("2026-02-01T00:00:00Z") });
  await assertRefused(verify(await leaf(old), [old], [r]), "expired", /CN=Old Int expired/);
  // An expired root.
  const oldRoot = await ca("Old Root", { notAfter: new Date("2026-02-01T00:00:00Z") });
  await assertRefused(verify(await leaf(oldRoot), [], [oldRoot]), "expired", /CN=Old Root/);
  // The default time is now: these 2026 leaves are not valid in 2020 or 2030 alike.
  const now = Date.now();
  if (now < notBefore.getTime() || now > notAfter.getTime()) {
    await assertRefused(
      verifyChain(await info(l), [], [await info(r)]),
      now < notBefore.getTime() ? "not_yet_valid" : "expired",
    );
  }
});

Deno.test("verifyChain: no trusted issuer, a missing intermediate, an impostor root", async () => {
  const r = await ca("Root");
  const i1 = await sub("Int 1", r);
  const l = await leaf(i1);
  await assertRefused(verify(l, [], [r]), "no_issuer", /no trusted issuer for "CN=Int 1"/);
  await assertRefused(verify(l, [i1], []), "no_issuer");
  await assertRefused(verify(await leaf(r), [], [await ca("Other")]), "no_issuer");
  // Same name, other key, and the impostor carries no key IDs: the signature decides.
  const impostor = await ca("Root", { keyIds: false });
  const bare = await leaf(r, { keyIds: false });
  await assertRefused(verify(bare, [], [impostor]), "bad_signature", /does not verify against/);
  // Same name, other key, with key IDs: they disagree before any signature is checked.
  await assertRefused(
    verify(await leaf(r), [], [await ca("Root")]),
    "no_issuer",
    /authority key ID of .* does not match CN=Root/,
  );
  // A root is trusted only in the roots list: the same root among intermediates is not enough.
  await assertRefused(verify(await leaf(r), [r], []), "no_issuer");
});

Deno.test("verifyChain: a changed signature byte is bad_signature", async () => {
  const r = await ca("Root");
  const i1 = await sub("Int 1", r);
  await assertRefused(verify(corrupt(await leaf(r)), [], [r]), "bad_signature");
  // A corrupted intermediate on an otherwise good path.
  await assertRefused(verify(await leaf(i1), [corrupt(i1)], [r]), "bad_signature", /CN=Int 1/);
});

Deno.test("verifyChain: an issuer must be a CA that may sign certificates", async () => {
  const r = await ca("Root");
  const notCa = await sub("Not CA", r, { ca: false });
  await assertRefused(verify(await leaf(notCa), [notCa], [r]), "not_ca", /CN=Not CA is not a CA/);
  const noBc = await sub("No BC", r, { ca: "absent" });
  await assertRefused(verify(await leaf(noBc), [noBc], [r]), "not_ca");
  const rootNotCa = await ca("Root Not CA", { ca: false });
  await assertRefused(verify(await leaf(rootNotCa), [], [rootNotCa]), "not_ca");
  // keyUsage present without keyCertSign; absent keyUsage is allowed (as Go).
  const noSign = await sub("No keyCertSign", r, {
    keyUsage: KU.digitalSignature | KU.cRLSign,
  });
  await assertRefused(
    verify(await leaf(noSign), [noSign], [r]),
    "key_usage",
    /does not allow keyCertSign/,
  );
  const noKu = await sub("No KU", r, { keyUsage: "absent" });
  await verify(await leaf(noKu), [noKu], [r]);
});

Deno.test("verifyChain: pathLenConstraint counts the intermediates below the issuer", async () => {
  const r0 = await ca("Root PL0", { pathLen: 0 });
  await verify(await leaf(r0), [], [r0]); // no intermediate below it: fine
  const under0 = await sub("Under PL0", r0);
  await assertRefused(
    verify(await leaf(under0), [under0], [r0]),
    "path_len",
    /allows 0 intermediates below it, not 1/,
  );
  const r1 = await ca("Root PL1", { pathLen: 1 });
  const a = await sub("A", r1);
  await verify(await leaf(a), [a], [r1]);
  const b = await sub("B", a);
  await assertRefused(verify(await leaf(b), [a, b], [r1]), "path_len", /not 2/);
  // The constraint of an intermediate binds too.
  const r = await ca("Root");
  const pl0 = await sub("Int PL0", r, { pathLen: 0 });
  const below = await sub("Below Int PL0", pl0);
  await assertRefused(verify(await leaf(below), [pl0, below], [r]), "path_len");
});

Deno.test("verifyChain: every certificate's EKU must permit the purpose (Go's chain rule)", async () => {
  const r = await ca("Root");
  const serverOnly = await leaf(r, { eku: [OID.serverAuth] });
  await verify(serverOnly, [], [r], { purpose: "serverAuth" });
  await verify(serverOnly, [], [r]); // purpose any: not checked
  await assertRefused(
    verify(serverOnly, [], [r], { purpose: "clientAuth" }),
    "ext_key_usage",
    /does not permit clientAuth/,
  );
  await verify(await leaf(r, { eku: "absent" }), [], [r], { purpose: "clientAuth" });
  await verify(await leaf(r, { eku: [OID.anyExtendedKeyUsage] }), [], [r], {
    purpose: "clientAuth",
  });
  // The leaf allows both, but an intermediate above it is limited to serverAuth.
  const int = await sub("ServerAuth Int", r, { eku: [OID.serverAuth] });
  const both = await leaf(int);
  await verify(both, [int], [r], { purpose: "serverAuth" });
  await assertRefused(
    verify(both, [int], [r], { purpose: "clientAuth" }),
    "ext_key_usage",
    /CN=ServerAuth Int/,
  );
});

Deno.test("verifyChain: an unknown critical extension anywhere refuses; a non-critical one does not", async () => {
  const r = await ca("Root");
  await assertRefused(
    verify(await leaf(r, { extra: [unknownExtension(true)] }), [], [r]),
    "critical_extension",
    new RegExp(`unknown critical extension ${OID.unknown.replaceAll(".", "\\.")}`),
  );
  await verify(await leaf(r, { extra: [unknownExtension(false)] }), [], [r]);
  const int = await sub("Critical Int", r, { extra: [unknownExtension(true)] });
  await assertRefused(verify(await leaf(int), [int], [r]), "critical_extension");
});

Deno.test("verifyChain: weak keys and SHA-1 signatures are refused wherever they are", async () => {
  const r = await ca("Root");
  await assertRefused(
    verify(await leaf(r, { key: "RSA-1024" }), [], [r]),
    "weak",
    /RSA 1024-bit key/,
  );
  await assertRefused(verify(await leaf(r, { hash: "SHA-1" }), [], [r]), "weak", /SHA-1/);
  const weakInt = await sub("Weak Int", r, { key: "RSA-1024" });
  await assertRefused(verify(await leaf(weakInt), [weakInt], [r]), "weak", /CN=Weak Int/);
  await verify(await leaf(r, { key: "RSA-2048" }), [], [r]);
});

Deno.test("verifyChain: a CA is no leaf", async () => {
  const r = await ca("Root");
  const int = await sub("Int", r);
  await assertRefused(verify(int, [], [r]), "leaf_is_ca", /CN=Int is a CA, not a leaf/);
  await assertRefused(verify(r, [], [r]), "leaf_is_ca");
});

Deno.test("verifyChain: name constraints bind the DNS and URI names below the issuer", async () => {
  const td = new URL(WEB).host;
  const dnsRoot = await ca("DNS Root", { permitDns: ["example.com"], uris: [] });
  await verify(await leaf(dnsRoot, { dns: ["api.example.com"] }), [], [dnsRoot]);
  await verify(await leaf(dnsRoot, { dns: ["example.com"] }), [], [dnsRoot]);
  await assertRefused(
    verify(await leaf(dnsRoot, { dns: ["api.example.org"] }), [], [dnsRoot]),
    "name_constraints",
    /DNS name api\.example\.org is not permitted by CN=DNS Root/,
  );
  // A suffix that is not a label boundary does not match.
  await assertRefused(
    verify(await leaf(dnsRoot, { dns: ["badexample.com"] }), [], [dnsRoot]),
    "name_constraints",
  );
  const excl = await ca("Excluding Root", { excludeDns: [".internal"], uris: [] });
  await verify(await leaf(excl, { dns: ["internal"] }), [], [excl]); // `.x`: subdomains only
  await assertRefused(
    verify(await leaf(excl, { dns: ["db.internal"] }), [], [excl]),
    "name_constraints",
    /excluded/,
  );
  // URI constraints match the URI's host: the SPIFFE trust domain.
  const uriRoot = await ca("URI Root", { permitUri: [td], uris: [] });
  await verify(await leaf(uriRoot), [], [uriRoot]);
  await assertRefused(
    verify(await leaf(uriRoot, { uris: ["spiffe://other.consul/ns/default/dc/dc1/svc/web"] }), [], [
      uriRoot,
    ]),
    "name_constraints",
    /URI spiffe:\/\/other\.consul/,
  );
  // A constrained name type we do not evaluate (an IP subtree) refuses, fail closed.
  const ipRoot = await ca("IP Root", {
    uris: [],
    permitRaw: [[0x87, 8, 10, 0, 0, 0, 255, 0, 0, 0]],
  });
  await assertRefused(
    verify(await leaf(ipRoot), [], [ipRoot]),
    "name_constraints",
    /constrains name types we do not evaluate/,
  );
  // An intermediate's constraint binds the leaf below it.
  const r = await ca("Root");
  const ncInt = await sub("NC Int", r, { permitDns: ["example.com"] });
  await assertRefused(
    verify(await leaf(ncInt, { dns: ["x.example.net"] }), [ncInt], [r]),
    "name_constraints",
  );
});

Deno.test("verifyChain: maxDepth counts leaf and root; the default is five", async () => {
  const r = await ca("Root");
  const i1 = await sub("I1", r);
  const i2 = await sub("I2", i1);
  const i3 = await sub("I3", i2);
  const i4 = await sub("I4", i3);
  await verify(await leaf(i3), [i1, i2, i3], [r]); // five certificates
  await assertRefused(
    verify(await leaf(i4), [i1, i2, i3, i4], [r]),
    "too_long",
    /longer than 5 certificates/,
  );
  await assertRefused(verify(await leaf(i1), [i1], [r], { maxDepth: 2 }), "too_long");
  await verify(await leaf(i4), [i1, i2, i3, i4], [r], { maxDepth: 6 });
});

Deno.test("verifyChain explores every candidate: a bad twin does not hide a good one", async () => {
  // Two roots with the same name and key: one expired, one current (a re-issued root).
  const keys = await crypto.subtle.generateKey(
    { name: "ECDSA", namedCurve: "P-256" },
    true,
    ["sign", "verify"],
  ) as CryptoKeyPair;
  const expired = await ca("Root", { key: keys, notAfter: new Date("2026-02-01T00:00:00Z") });
  const current = await ca("Root", { key: keys });
  const l = await leaf(current);
  const path = await verify(l, [], [expired, current]);
  assert.equal(path.at(-1)!.notAfter.getTime(), current.cert.notAfter.getTime());
  // With only the expired one, the error is the expiry, not "no issuer".
  await assertRefused(verify(l, [], [expired]), "expired");
});

Deno.test("verifyChain: cross-signed intermediates that sign each other do not loop", async () => {
  const r = await ca("Root");
  const aKeys = await crypto.subtle.generateKey(
    { name: "ECDSA", namedCurve: "P-256" },
    true,
    ["sign", "verify"],
  ) as CryptoKeyPair;
  const bKeys = await crypto.subtle.generateKey(
    { name: "ECDSA", namedCurve: "P-256" },
    true,
    ["sign", "verify"],
  ) as CryptoKeyPair;
  const aSelf = await ca("A", { key: aKeys });
  const bSelf = await ca("B", { key: bKeys });
  const aByB = await sub("A", bSelf, { key: aKeys });
  const bByA = await sub("B", aSelf, { key: bKeys });
  const l = await leaf(aSelf);
  // A and B vouch for each other, and neither leads to the trusted root: refused, promptly.
  await assertRefused(verify(l, [aByB, bByA, aSelf, bSelf], [r]), "no_issuer");
  // When B is trusted, the path goes leaf → A (signed by B) → B.
  const path = await verify(l, [aByB, bByA], [bSelf]);
  assert.deepEqual(names(path).slice(1), ["CN=A", "CN=B"]);
});

Deno.test("verifyChain names the problem of the deepest path it tried", async () => {
  const r = await ca("Root");
  const good = await sub("Int", r);
  const l = await leaf(good);
  // A second intermediate with the same name but another key: a dead end at depth 1, while the
  // good intermediate reaches a root that is expired (depth 2) — the expiry is reported.
  const dead = await sub("Int", await ca("Elsewhere"), { keyIds: false });
  const expiredRoot = await ca("Root", {
    key: r.keys as CryptoKeyPair,
    notAfter: new Date("2026-02-01T00:00:00Z"),
  });
  await assertRefused(verify(l, [dead, good], [expiredRoot]), "expired", /CN=Root expired/);
});
