// STOW-RS answers read per file, and the batching of uploads. Run with `npm run test:unit`.
import assert from "node:assert/strict";
import { test } from "node:test";
import { batches, reasonText, stowOutcome } from "./stow";

test("a STOW-RS answer gives the stored UIDs and each failure's reason", () => {
  // the shape carina's STOW-RS answers with (PS3.18 Table 10.5.3-1)
  const body = {
    "00081190": { vr: "UR", Value: ["http://x/studies/1.2"] },
    "00081198": {
      vr: "SQ",
      Value: [
        { "00081150": { vr: "UI", Value: ["1.2.840.10008.5.1.4.1.1.2"] }, "00081155": { vr: "UI", Value: ["2.25.7"] }, "00081197": { vr: "US", Value: [0x0111] } },
        { "00081197": { vr: "US", Value: [0xc122] } },
      ],
    },
    "00081199": {
      vr: "SQ",
      Value: [{ "00081155": { vr: "UI", Value: ["2.25.5"] } }, { "00081155": { vr: "UI", Value: ["2.25.6"] } }],
    },
  };
  const outcome = stowOutcome(body);
  assert.deepEqual([...outcome.stored], ["2.25.5", "2.25.6"]);
  assert.deepEqual([...outcome.failed], [["2.25.7", "already stored with other content (duplicate SOP Instance UID) (0x0111)"]]);
  assert.deepEqual(outcome.anonymous, ["not an application/dicom part (0xC122)"]);
  assert.equal(reasonText(0xa7ff), "failed (0xA7FF)");
  assert.deepEqual(stowOutcome({}), { stored: new Set(), failed: new Map(), anonymous: [] });
});

test("batches hold at most so many files and bytes; a larger file goes alone", () => {
  const files = [5, 5, 5, 30, 5, 5].map((size, i) => ({ size, i }));
  const split = batches(files, 2, 12).map((b) => b.map((f) => f.i));
  assert.deepEqual(split, [[0, 1], [2], [3], [4, 5]]);
  assert.deepEqual(batches([], 2, 12), []);
});
