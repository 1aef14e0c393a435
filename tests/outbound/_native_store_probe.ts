// Run by native_tls_test.ts in a process with a chosen default CA store (DENO_TLS_CA_STORE,
// DENO_CERT): dials MESH.port on both legs and prints what each decided.
// Env: MESH = JSON { port, root (PEM), web: { certPem, keyPem } }.
import { dialMesh } from "../../src/outbound/dialer.ts";
import { dialMeshNative, nativeTlsSupport } from "../../src/outbound/native_tls.ts";
import { endpoint, materialFor, rootList } from "./_native_fixtures.ts";

const mesh = JSON.parse(Deno.env.get("MESH")!);
const material = await materialFor(rootList([{ pem: mesh.root }]), mesh.web);
const ep = endpoint(mesh.port);
const native = await dialMeshNative(material, ep, { timeoutMs: 5000 });
if (native.ok) native.connection.conn.close();
const dialed = await dialMesh(material, ep, 5000);
if (dialed.ok) dialed.connection.socket.destroy();
const node = dialed.ok ? "ok" : dialed.failure.reason;
const support = nativeTlsSupport();
console.log(JSON.stringify({
  native: native.ok ? "ok" : native.failure?.reason ?? "none",
  fallback: !native.ok && !!native.fallback,
  node,
  roots: support.available ? support.tlsLayerRoots : support.reason,
}));
