// Read and write DICOM Part 10 files at the byte level.
//
// Elements that are not changed are written back with the bytes they were read with (pixel
// data, encapsulated or not, stays byte-identical); sequences are written anew with undefined
// lengths. The transfer syntax of the file is kept.
import { lookup } from "./dictionary";

export const TS_IMPLICIT_LE = "1.2.840.10008.1.2";
export const TS_EXPLICIT_LE = "1.2.840.10008.1.2.1";
export const TS_EXPLICIT_BE = "1.2.840.10008.1.2.2";
export const TS_DEFLATED = "1.2.840.10008.1.2.1.99";

export const PIXEL_DATA = 0x7fe00010;
const ITEM = 0xfffee000;
const ITEM_END = 0xfffee00d;
const SEQ_END = 0xfffee0dd;
const UNDEFINED = 0xffffffff;

const LONG_VRS = new Set(["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"]);
const BINARY_VRS = new Set(["OB", "OD", "OF", "OL", "OV", "OW", "UN"]);

export class DicomParseError extends Error {
  override name = "DicomParseError";
}

export interface Element {
  tag: number;
  /** VR written in the file (explicit) or from the dictionary (implicit; "UN" when unknown). */
  vr: string;
  /** The value bytes (empty for sequences). */
  value: Uint8Array;
  /** Items of a sequence (an SQ, or a UN of undefined length, which holds implicit VR items). */
  items?: Dataset[];
  /** The element as it was read (header and value), written back as is unless changed. */
  raw?: Uint8Array;
}

export interface Dataset {
  elements: Element[];
  implicit: boolean;
  little: boolean;
}

export interface DicomFile {
  /** File meta information (group 0002), always explicit VR little endian. */
  meta: Dataset;
  dataset: Dataset;
  transferSyntax: string;
  /** The 128-byte preamble as read. */
  preamble: Uint8Array;
}

class Reader {
  readonly view: DataView;
  constructor(
    readonly bytes: Uint8Array,
    public little: boolean,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  u16(pos: number): number {
    this.check(pos, 2);
    return this.view.getUint16(pos, this.little);
  }
  u32(pos: number): number {
    this.check(pos, 4);
    return this.view.getUint32(pos, this.little);
  }
  tag(pos: number): number {
    return ((this.u16(pos) << 16) | this.u16(pos + 2)) >>> 0;
  }
  check(pos: number, n: number): void {
    if (pos + n > this.bytes.length) throw new DicomParseError(`truncated at byte ${pos}`);
  }
}

/** Whether the bytes look like a DICOM Part 10 file (preamble followed by "DICM"). */
export function isPart10(bytes: Uint8Array): boolean {
  return (
    bytes.length >= 132 &&
    bytes[128] === 0x44 &&
    bytes[129] === 0x49 &&
    bytes[130] === 0x43 &&
    bytes[131] === 0x4d
  );
}

export function parsePart10(bytes: Uint8Array, inflated?: Uint8Array): DicomFile {
  if (!isPart10(bytes)) throw new DicomParseError("not a DICOM Part 10 file (no DICM marker)");
  const meta: Dataset = { elements: [], implicit: false, little: true };
  const metaReader = new Reader(bytes, true);
  let pos = 132;
  while (pos + 8 <= bytes.length && metaReader.u16(pos) === 0x0002) {
    const [el, next] = readElement(metaReader, pos, false);
    meta.elements.push(el);
    pos = next;
  }
  const tsElement = meta.elements.find((e) => e.tag === 0x00020010);
  if (!tsElement) throw new DicomParseError("file meta information has no TransferSyntaxUID");
  const transferSyntax = decodeAscii(tsElement.value).replace(/[\0 ]+$/, "");
  let body = bytes;
  if (transferSyntax === TS_DEFLATED) {
    if (!inflated) throw new DicomParseError("a deflated file is read with readPart10");
    body = inflated;
    pos = 0;
  }
  const implicit = transferSyntax === TS_IMPLICIT_LE;
  const little = transferSyntax !== TS_EXPLICIT_BE;
  const reader = new Reader(body, little);
  const dataset: Dataset = { elements: [], implicit, little };
  readElements(reader, pos, body.length, dataset, null);
  return { meta, dataset, transferSyntax, preamble: bytes.slice(0, 128) };
}

async function pipe(bytes: Uint8Array, stream: CompressionStream | DecompressionStream): Promise<Uint8Array> {
  const transform = stream as unknown as TransformStream<Uint8Array, Uint8Array>;
  const out = new Response(new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(transform));
  return new Uint8Array(await out.arrayBuffer());
}

/** Where the data set starts: after the preamble, "DICM" and the meta group. */
function datasetOffset(bytes: Uint8Array): number {
  const reader = new Reader(bytes, true);
  let pos = 132;
  while (pos + 8 <= bytes.length && reader.u16(pos) === 0x0002) pos = readElement(reader, pos, false)[1];
  return pos;
}

/** Read a Part 10 file of any supported transfer syntax, deflated included. */
export async function readPart10(bytes: Uint8Array): Promise<DicomFile> {
  const head = parseMetaOnly(bytes);
  if (head !== TS_DEFLATED) return parsePart10(bytes);
  let inflated: Uint8Array;
  try {
    inflated = await pipe(bytes.subarray(datasetOffset(bytes)), new DecompressionStream("deflate-raw"));
  } catch (exc) {
    throw new DicomParseError(`the deflated data set cannot be inflated: ${String(exc)}`);
  }
  return parsePart10(bytes, inflated);
}

/** Encode a file as writePart10 does, deflating the data set under the deflated syntax. */
export async function encodePart10(file: DicomFile): Promise<Uint8Array> {
  const plain = writePart10(file);
  if (file.transferSyntax !== TS_DEFLATED) return plain;
  const start = datasetOffset(plain);
  const deflated = await pipe(plain.subarray(start), new CompressionStream("deflate-raw"));
  const out = new Uint8Array(start + deflated.length);
  out.set(plain.subarray(0, start));
  out.set(deflated, start);
  return out;
}

function parseMetaOnly(bytes: Uint8Array): string {
  if (!isPart10(bytes)) throw new DicomParseError("not a DICOM Part 10 file (no DICM marker)");
  const reader = new Reader(bytes, true);
  let pos = 132;
  while (pos + 8 <= bytes.length && reader.u16(pos) === 0x0002) {
    const [el, next] = readElement(reader, pos, false);
    if (el.tag === 0x00020010) return decodeAscii(el.value).replace(/[\0 ]+$/, "");
    pos = next;
  }
  throw new DicomParseError("file meta information has no TransferSyntaxUID");
}

/** Read elements into ``ds`` from ``pos`` until ``end`` or, with ``stopTag``, that delimiter. */
function readElements(
  reader: Reader,
  pos: number,
  end: number,
  ds: Dataset,
  stopTag: number | null,
): number {
  const saved = reader.little;
  reader.little = ds.little;
  try {
    while (pos < end) {
      const tag = reader.tag(pos);
      if (stopTag !== null && tag === stopTag) return pos + 8;
      if (tag === ITEM_END || tag === SEQ_END) {
        throw new DicomParseError(`unexpected delimiter at byte ${pos}`);
      }
      const [el, next] = readElement(reader, pos, ds.implicit);
      ds.elements.push(el);
      pos = next;
    }
    if (stopTag !== null) throw new DicomParseError("item without its delimiter");
    return pos;
  } finally {
    reader.little = saved;
  }
}

function readElement(reader: Reader, start: number, implicit: boolean): [Element, number] {
  const tag = reader.tag(start);
  let vr: string;
  let length: number;
  let pos: number;
  if (implicit) {
    vr = lookup(tag)?.vr ?? "UN";
    length = reader.u32(start + 4);
    pos = start + 8;
  } else {
    reader.check(start + 4, 2);
    vr = String.fromCharCode(reader.bytes[start + 4], reader.bytes[start + 5]);
    if (!/^[A-Z]{2}$/.test(vr)) throw new DicomParseError(`invalid VR at byte ${start + 4}`);
    if (LONG_VRS.has(vr)) {
      length = reader.u32(start + 8);
      pos = start + 12;
    } else {
      length = reader.u16(start + 6);
      pos = start + 8;
    }
  }
  const dictVR = lookup(tag)?.vr;
  const isSequence =
    vr === "SQ" ||
    (length === UNDEFINED && tag !== PIXEL_DATA && (vr === "UN" || vr === "OB")) ||
    (vr === "UN" && dictVR === "SQ");
  if (isSequence) {
    // a UN sequence holds implicit VR little endian items (PS3.5 6.2.2)
    const itemImplicit = vr === "SQ" ? implicit : true;
    const itemLittle = vr === "SQ" ? reader.little : true;
    const items: Dataset[] = [];
    const end = length === UNDEFINED ? reader.bytes.length : pos + length;
    if (end > reader.bytes.length) throw new DicomParseError(`truncated sequence at ${start}`);
    const saved = reader.little;
    reader.little = itemLittle;
    try {
      while (pos < end) {
        const itemTag = reader.tag(pos);
        const itemLength = reader.u32(pos + 4);
        pos += 8;
        if (itemTag === SEQ_END) break;
        if (itemTag !== ITEM) throw new DicomParseError(`expected an item at byte ${pos - 8}`);
        const item: Dataset = { elements: [], implicit: itemImplicit, little: itemLittle };
        if (itemLength === UNDEFINED) {
          pos = readElements(reader, pos, reader.bytes.length, item, ITEM_END);
        } else {
          readElements(reader, pos, pos + itemLength, item, null);
          pos += itemLength;
        }
        items.push(item);
      }
    } finally {
      reader.little = saved;
    }
    return [{ tag, vr: vr === "SQ" ? "SQ" : "UN", value: new Uint8Array(0), items }, pos];
  }
  if (length === UNDEFINED) {
    // encapsulated pixel data: fragments up to the sequence delimiter, kept as read
    let p = pos;
    for (;;) {
      const itemTag = reader.tag(p);
      const itemLength = reader.u32(p + 4);
      p += 8;
      if (itemTag === SEQ_END) break;
      if (itemTag !== ITEM) throw new DicomParseError(`bad pixel data fragment at byte ${p - 8}`);
      reader.check(p, itemLength);
      p += itemLength;
    }
    const raw = reader.bytes.subarray(start, p);
    return [{ tag, vr, value: reader.bytes.subarray(pos, p), raw }, p];
  }
  reader.check(pos, length);
  const value = reader.bytes.subarray(pos, pos + length);
  // a UN element of a known attribute is handled (and, when changed, written) with its own VR
  if (vr === "UN" && dictVR && dictVR !== "UN") vr = dictVR;
  return [{ tag, vr, value, raw: reader.bytes.subarray(start, pos + length) }, pos + length];
}

// ------------------------------------------------------------------------------ writing

class Writer {
  chunks: Uint8Array[] = [];
  size = 0;
  push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.size += bytes.length;
  }
  header(tag: number, vr: string, length: number, implicit: boolean, little: boolean): void {
    const long = implicit || LONG_VRS.has(vr);
    const buf = new Uint8Array(implicit ? 8 : long ? 12 : 8);
    const view = new DataView(buf.buffer);
    view.setUint16(0, tag >>> 16, little);
    view.setUint16(2, tag & 0xffff, little);
    if (implicit) {
      view.setUint32(4, length, little);
    } else {
      buf[4] = vr.charCodeAt(0);
      buf[5] = vr.charCodeAt(1);
      if (long) view.setUint32(8, length, little);
      else {
        if (length > 0xffff) throw new DicomParseError(`value of ${vr} too long`);
        view.setUint16(6, length, little);
      }
    }
    this.push(buf);
  }
  concat(): Uint8Array {
    const out = new Uint8Array(this.size);
    let pos = 0;
    for (const c of this.chunks) {
      out.set(c, pos);
      pos += c.length;
    }
    return out;
  }
}

function writeDataset(w: Writer, ds: Dataset): void {
  const sorted = [...ds.elements].sort((a, b) => a.tag - b.tag);
  for (const el of sorted) {
    if (el.items) {
      w.header(el.tag, el.vr, UNDEFINED, ds.implicit, ds.little);
      for (const item of el.items) {
        w.header(ITEM, "", UNDEFINED, true, item.little);
        writeDataset(w, item);
        w.header(ITEM_END, "", 0, true, item.little);
      }
      w.header(SEQ_END, "", 0, true, el.vr === "SQ" ? ds.little : true);
    } else if (el.raw) {
      w.push(el.raw);
    } else {
      w.header(el.tag, el.vr, el.value.length, ds.implicit, ds.little);
      w.push(el.value);
    }
  }
}

/** Encode a file: preamble, "DICM", meta group (with its group length recomputed), dataset. */
export function writePart10(file: DicomFile): Uint8Array {
  const metaBody = new Writer();
  writeDataset(metaBody, {
    ...file.meta,
    elements: file.meta.elements.filter((e) => e.tag !== 0x00020000),
  });
  const w = new Writer();
  w.push(file.preamble.length === 128 ? file.preamble : new Uint8Array(128));
  w.push(new Uint8Array([0x44, 0x49, 0x43, 0x4d]));
  const groupLength = new Uint8Array(4);
  new DataView(groupLength.buffer).setUint32(0, metaBody.size, true);
  w.header(0x00020000, "UL", 4, false, true);
  w.push(groupLength);
  for (const c of metaBody.chunks) w.push(c);
  writeDataset(w, file.dataset);
  return w.concat();
}

// ------------------------------------------------------------------------------ values

export function find(ds: Dataset, tag: number): Element | undefined {
  return ds.elements.find((e) => e.tag === tag);
}

export function remove(ds: Dataset, tag: number): void {
  ds.elements = ds.elements.filter((e) => e.tag !== tag);
}

/** Whether an element has no value (text of padding only counts as none). */
export function isEmpty(el: Element): boolean {
  if (el.items) return el.items.length === 0;
  if (el.value.length === 0) return true;
  if (BINARY_VRS.has(el.vr) || NUMERIC[el.vr] || el.vr === "AT") return false;
  return el.value.every((b) => b === 0x20 || b === 0);
}

export function isBinaryVR(vr: string): boolean {
  return BINARY_VRS.has(vr);
}

export function decodeAscii(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return s;
}

/** The character set of a dataset, for decoding text values ("utf-8" or byte-preserving "latin1"). */
export function charsetOf(ds: Dataset, inherited = "latin1"): string {
  const el = find(ds, 0x00080005);
  if (!el) return inherited;
  const terms = decodeAscii(el.value).split("\\").map((t) => t.trim());
  return terms.includes("ISO_IR 192") ? "utf-8" : "latin1";
}

export function decodeText(bytes: Uint8Array, charset: string): string {
  return charset === "utf-8" ? new TextDecoder("utf-8").decode(bytes) : decodeAscii(bytes);
}

export function encodeText(text: string, charset: string): Uint8Array {
  if (charset === "utf-8") return new TextEncoder().encode(text);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    out[i] = c < 256 ? c : 0x3f;
  }
  return out;
}

const NUMERIC: Record<string, [number, (v: DataView, p: number, x: number, le: boolean) => void]> = {
  US: [2, (v, p, x, le) => v.setUint16(p, x, le)],
  SS: [2, (v, p, x, le) => v.setInt16(p, x, le)],
  UL: [4, (v, p, x, le) => v.setUint32(p, x, le)],
  SL: [4, (v, p, x, le) => v.setInt32(p, x, le)],
  FL: [4, (v, p, x, le) => v.setFloat32(p, x, le)],
  FD: [8, (v, p, x, le) => v.setFloat64(p, x, le)],
};

/** The text values of an element (split at backslashes, padding removed). */
export function textValues(el: Element, charset: string): string[] {
  if (el.value.length === 0) return [];
  const text = decodeText(el.value, el.vr === "UI" ? "latin1" : charset).replace(/[\0 ]+$/, "");
  if (text === "") return [];
  const values = ["LT", "ST", "UT", "UR"].includes(el.vr) ? [text] : text.split("\\");
  return values.map((v) => (el.vr === "UI" ? v.replace(/\0/g, "") : v.trim()));
}

/** Set the text values of an element (padded to even length: NUL for UI, space otherwise). */
export function setText(el: Element, values: string[], charset: string): void {
  let bytes = encodeText(values.join("\\"), el.vr === "UI" ? "latin1" : charset);
  if (bytes.length % 2) {
    const padded = new Uint8Array(bytes.length + 1);
    padded.set(bytes);
    padded[bytes.length] = el.vr === "UI" ? 0 : 0x20;
    bytes = padded;
  }
  el.value = bytes;
  el.items = undefined;
  el.raw = undefined;
}

/** Set a single number (US, SS, UL, SL, FL, FD) in the dataset's byte order. */
export function setNumber(el: Element, x: number, little: boolean): boolean {
  const spec = NUMERIC[el.vr];
  if (!spec) return false;
  const buf = new Uint8Array(spec[0]);
  spec[1](new DataView(buf.buffer), 0, x, little);
  el.value = buf;
  el.raw = undefined;
  return true;
}

export function setBytes(el: Element, bytes: Uint8Array): void {
  el.value = bytes;
  el.items = undefined;
  el.raw = undefined;
}

export function setEmpty(el: Element): void {
  el.value = new Uint8Array(0);
  if (el.items) el.items = [];
  el.raw = undefined;
}

/** A new element holding text, in a dataset of the given encoding. */
export function textElement(tag: number, vr: string, values: string[], charset = "latin1"): Element {
  const el: Element = { tag, vr, value: new Uint8Array(0) };
  setText(el, values, charset);
  return el;
}

/** Put an element in place of the one with the same tag (or add it), keeping the VR it had. */
export function put(ds: Dataset, el: Element): void {
  const old = find(ds, el.tag);
  if (old && old.vr !== el.vr && !old.items && !el.items && !BINARY_VRS.has(old.vr)) el.vr = old.vr;
  remove(ds, el.tag);
  ds.elements.push(el);
}

/** The printable form of a value, for previews (binary values are described, not shown). */
export function displayValue(el: Element, charset: string, little = true): string {
  if (el.items) return `${el.items.length} item(s)`;
  if (BINARY_VRS.has(el.vr) || el.tag === PIXEL_DATA) return `${el.value.length} bytes`;
  const spec = NUMERIC[el.vr];
  if (spec) {
    const view = new DataView(el.value.buffer, el.value.byteOffset, el.value.byteLength);
    const out: number[] = [];
    for (let p = 0; p + spec[0] <= el.value.length && out.length < 16; p += spec[0]) {
      out.push(readNumber(view, el.vr, p, little));
    }
    return out.join("\\");
  }
  if (el.vr === "AT") return `${el.value.length / 4} tag(s)`;
  return textValues(el, charset).join("\\");
}

function readNumber(view: DataView, vr: string, p: number, little: boolean): number {
  switch (vr) {
    case "US":
      return view.getUint16(p, little);
    case "SS":
      return view.getInt16(p, little);
    case "UL":
      return view.getUint32(p, little);
    case "SL":
      return view.getInt32(p, little);
    case "FL":
      return view.getFloat32(p, little);
    default:
      return view.getFloat64(p, little);
  }
}
