// Go duration strings, as Go's time.ParseDuration reads them and time.Duration.String writes
// them (expected values from Go's documentation and its time package tests).
import assert from "node:assert/strict";
import { formatGoDuration, parseGoDuration } from "../../src/agent/duration.ts";

Deno.test("parseGoDuration reads every unit, fractions, sums and signs", () => {
  const cases: [string, number][] = [
    ["0", 0],
    ["-0", 0], // Go: a sign and a bare 0 is zero too
    ["+0", 0],
    ["5s", 5000],
    ["300ms", 300],
    ["1m30s", 90_000],
    ["72h", 259_200_000],
    ["2h45m", 9_900_000],
    ["1.5h", 5_400_000],
    [".5s", 500],
    ["1.s", 1000],
    ["1500us", 1.5],
    ["1500µs", 1.5], // U+00B5 micro sign
    ["1500μs", 1.5], // U+03BC Greek mu
    ["2000000ns", 2],
    ["1h1h", 7_200_000], // Go adds repeated units
    ["-1.5s", -1500],
    ["+10s", 10_000],
    ["0s", 0],
    [" 5s ", 5000], // ours, not Go's: surrounding space is trimmed (the CLI refuses it itself)
  ];
  for (const [text, ms] of cases) assert.equal(parseGoDuration(text), ms, text);
});

Deno.test("parseGoDuration refuses what Go refuses, with the text in the message", () => {
  for (
    const text of ["", "5", "s", "5 s", "5S", "1d", "1.5.5s", ".s", "5s5", "1h-1m", "--5s", "x5s"]
  ) {
    assert.throws(
      () => parseGoDuration(text),
      (e) => e instanceof RangeError && e.message === `invalid duration "${text.trim()}"`,
      JSON.stringify(text),
    );
  }
  // The message quotes at most 40 characters of a long input.
  assert.throws(() => parseGoDuration("9".repeat(100)), (e: Error) => e.message.length < 60);
});

Deno.test("formatGoDuration writes Go's Duration.String for whole and fractional units", () => {
  const cases: [number, string][] = [
    [0, "0s"],
    [1, "1ms"],
    [999, "999ms"],
    [1000, "1s"],
    [1500, "1.5s"],
    [5000, "5s"],
    [60_000, "1m0s"],
    [90_000, "1m30s"],
    [3_600_000, "1h0m0s"],
    [259_200_000, "72h0m0s"],
    [90_061_000, "25h1m1s"],
  ];
  for (const [ms, text] of cases) {
    assert.equal(formatGoDuration(ms), text, String(ms));
    assert.equal(parseGoDuration(text), ms, `${text} reads back`);
  }
});
