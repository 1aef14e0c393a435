/**
 * The `meshgate` command line. The proxy itself lands with the data-plane work; until then
 * this entry point says so plainly.
 * @module
 */
if (import.meta.main) {
  console.error("meshgate proxy: not yet (the data plane is issue #3)");
  Deno.exit(1);
}
