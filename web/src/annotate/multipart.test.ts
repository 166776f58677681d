// The multipart/related reader of WADO-RS answers. Run with `npm run test:unit`.
import assert from "node:assert/strict";
import { test } from "node:test";
import { firstPart } from "./multipart";

const encode = (text: string) => new TextEncoder().encode(text);

function message(boundary: string, parts: Uint8Array[]): Uint8Array {
  const chunks: Uint8Array[] = [];
  for (const part of parts) {
    chunks.push(encode(`--${boundary}\r\nContent-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\n\r\n`), part, encode("\r\n"));
  }
  chunks.push(encode(`--${boundary}--\r\n`));
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

test("the first part's bytes come back whole, CRLFs and dashes inside included", () => {
  const payload = new Uint8Array([0, 1, 13, 10, 45, 45, 255, 68, 73, 67, 77, 13, 10]);
  const body = message("b-42", [payload, encode("second")]);
  const got = new Uint8Array(firstPart(body, 'multipart/related; type="application/dicom"; boundary=b-42'));
  assert.deepEqual([...got], [...payload]);
});

test("a quoted boundary is read; an answer that is not multipart is refused", () => {
  const body = message("quoted", [encode("DICM")]);
  assert.equal(new TextDecoder().decode(firstPart(body, 'multipart/related; boundary="quoted"; type="application/dicom"')), "DICM");
  assert.throws(() => firstPart(body, "application/dicom"), /not a multipart answer/);
  assert.throws(() => firstPart(encode("--other\r\n\r\nx"), "multipart/related; boundary=quoted"), /no boundary/);
});
