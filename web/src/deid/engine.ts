// De-identification of one DICOM file in the browser, with the rules the server resolves for
// the project (GET /api/projects/{project}/deid/rules) and the same steps as the server's
// carina.deid.Deidentifier. Replacement UIDs and the patient key are SHA-256 of the project's
// salt and the original value; the pseudonym and date shift come from the server, which is sent
// the key only (POST /api/projects/{project}/deid/pseudonym).
import { keywordOf, tagString } from "./dictionary";
import {
  type Dataset,
  type DicomFile,
  type Element,
  PIXEL_DATA,
  charsetOf,
  displayValue,
  find,
  isBinaryVR,
  isEmpty,
  readPart10,
  put,
  remove,
  setBytes,
  setEmpty,
  setNumber,
  setText,
  textElement,
  textValues,
  encodePart10,
} from "./dicom";
import { burnedInRisk } from "./risk";
import { type Action, type DeidRules, type PatientPseudonym, indexRules } from "./rules";

/** Implementation Class UID written in the file meta of files de-identified in the browser. */
export const IMPLEMENTATION_CLASS_UID = "2.25.182135795412896531148706785226498160437";
export const IMPLEMENTATION_VERSION = "CARINA_WEB_DEID";

const TEXT_VRS = new Set(["PN", "LO", "SH", "ST", "LT", "UT", "UC", "DA", "DT", "TM", "AE"]);
const IDENTIFYING_KEYWORDS: [number, string][] = [
  [0x00100010, "PatientName"],
  [0x00100020, "PatientID"],
  [0x00101000, "OtherPatientIDs"],
  [0x00101001, "OtherPatientNames"],
  [0x00101005, "PatientBirthName"],
  [0x00101060, "PatientMotherBirthName"],
  [0x00101040, "PatientAddress"],
  [0x00080050, "AccessionNumber"],
  [0x00080080, "InstitutionName"],
  [0x00080081, "InstitutionAddress"],
  [0x00080090, "ReferringPhysicianName"],
  [0x00081050, "PerformingPhysicianName"],
  [0x00081070, "OperatorsName"],
  [0x00081060, "NameOfPhysiciansReadingStudy"],
  [0x00081048, "PhysiciansOfRecord"],
  [0x00081010, "StationName"],
];
const BINARY_DUMMY: Record<string, number> = { OB: 2, OW: 2, UN: 2 };

/** One change de-identification makes to a file, for the preview. */
export interface Change {
  /** Where: the tag, inside sequence items as "(0008,1115)[0] > (0008,1155)". */
  path: string;
  tag: string;
  keyword: string;
  action: Action | "pseudonym" | "set";
  before: string;
  /** The new value; null when the element is removed. */
  after: string | null;
}

export interface DeidResult {
  bytes: Uint8Array;
  changes: Change[];
  /** Why the pixels may carry burned-in identifying text (empty: no such sign). */
  burnedIn: string[];
  sopInstanceUID: string;
  studyInstanceUID: string;
  seriesInstanceUID: string;
  transferSyntax: string;
  pseudonym: string;
  /** Whether the pixel data element was written with the bytes it was read with. */
  pixelDataKept: boolean;
}

export type PseudonymSource = (key: string) => Promise<PatientPseudonym>;

// --------------------------------------------------------------------------- hashing

async function sha256(text: string): Promise<Uint8Array> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return new Uint8Array(digest);
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The key sent to the server instead of the PatientID: hex SHA-256(salt + PatientID). */
export async function patientKey(salt: string, patientId: string): Promise<string> {
  return hex(await sha256(salt + patientId.replace(/[\0 ]+$/, "").trim()));
}

/** The replacement of a UID: uid_root + "." + the integer of the first 16 bytes of SHA-256(salt + uid). */
export async function replacementUid(rules: DeidRules, uid: string): Promise<string> {
  const digest = await sha256(rules.salt + uid.replace(/[\0 ]+$/, "").trim());
  return `${rules.uid_root}.${BigInt("0x" + hex(digest.subarray(0, 16))).toString()}`;
}

// --------------------------------------------------------------------------- dates

export function shiftDate(value: string, days: number): string | null {
  const v = value.trim();
  if (!/^\d{8}$/.test(v)) return null;
  const y = Number(v.slice(0, 4));
  const m = Number(v.slice(4, 6));
  const d = Number(v.slice(6, 8));
  const date = new Date(Date.UTC(y, m - 1, d));
  if (date.getUTCFullYear() !== y || date.getUTCMonth() !== m - 1 || date.getUTCDate() !== d) {
    return null;
  }
  if (y < 1) return null;
  date.setUTCDate(date.getUTCDate() + days);
  const out = date.getUTCFullYear();
  if (out < 1) return null;
  return (
    String(out).padStart(4, "0") +
    String(date.getUTCMonth() + 1).padStart(2, "0") +
    String(date.getUTCDate()).padStart(2, "0")
  );
}

export function shiftDateTime(value: string, days: number): string | null {
  const v = value.trim();
  if (v.length < 8) return null;
  const head = shiftDate(v.slice(0, 8), days);
  return head === null ? null : head + v.slice(8);
}

// --------------------------------------------------------------------------- the walk

class Run {
  readonly index;
  readonly changes: Change[] = [];
  private readonly uidCache = new Map<string, Promise<string>>();
  pattern: RegExp | null = null;
  shift = 0;

  constructor(readonly rules: DeidRules) {
    this.index = indexRules(rules);
  }

  private get datesKept(): boolean {
    return this.index.retainFullDates || this.index.retainModifiedDates;
  }

  uid(value: string): Promise<string> {
    const key = value.replace(/[\0 ]+$/, "").trim();
    let cached = this.uidCache.get(key);
    if (!cached) {
      cached = replacementUid(this.rules, key);
      this.uidCache.set(key, cached);
    }
    return cached;
  }

  record(path: string, el: Element, action: Change["action"], before: string, after: string | null): void {
    if (before === after) return;
    this.changes.push({ path, tag: tagString(el.tag), keyword: keywordOf(el.tag), action, before, after });
  }

  async walk(ds: Dataset, mode: "keep" | "dummy" | "scrub", charset: string, prefix: string): Promise<void> {
    const cs = charsetOf(ds, charset);
    const keep = this.index.safePrivate.size ? this.privateKeep(ds, cs) : new Set<number>();
    for (const el of [...ds.elements]) {
      if (!ds.elements.includes(el)) continue; // removed with its overlay group
      const tag = el.tag;
      const group = tag >>> 16;
      const path = prefix + tagString(tag);
      if (group & 1) {
        // as on the server, private elements go unless the safe private list keeps them
        if (!keep.has(tag)) {
          this.record(path, el, "X", displayValue(el, cs, ds.little), null);
          remove(ds, tag);
        }
        continue;
      }
      let action = this.index.actions.get(tag);
      if (action === undefined) {
        if (group >= 0x5000 && group <= 0x501e && !(group & 1)) {
          action = this.index.removeCurves ? "X" : "C";
        } else if (
          group >= 0x6000 &&
          group <= 0x601e &&
          ((tag & 0xffff) === 0x3000 || (tag & 0xffff) === 0x4000)
        ) {
          action = this.index.removeOverlays ? "X" : "C";
        }
      }
      if (action === undefined) {
        if (el.items) {
          for (const [i, item] of el.items.entries()) await this.walk(item, mode, cs, `${path}[${i}] > `);
        } else if (mode !== "keep" && TEXT_VRS.has(el.vr)) {
          this.unlistedText(el, mode, cs, path);
        }
        continue;
      }
      await this.apply(ds, el, action, mode, cs, path);
    }
  }

  private privateKeep(ds: Dataset, cs: string): Set<number> {
    const keep = new Set<number>();
    for (const el of ds.elements) {
      const group = el.tag >>> 16;
      const elem = el.tag & 0xffff;
      if (!(group & 1) || elem < 0x1000) continue;
      const creatorTag = ((group << 16) | (elem >> 8)) >>> 0;
      const creator = find(ds, creatorTag);
      if (!creator) continue;
      const name = textValues({ ...creator, vr: "LO" }, cs).join("\\").trim();
      if (this.index.safePrivate.has(`${name}|${group}|${elem & 0xff}`)) {
        keep.add(el.tag);
        keep.add(creatorTag);
      }
    }
    return keep;
  }

  private unlistedText(el: Element, mode: "dummy" | "scrub", cs: string, path: string): void {
    if (isEmpty(el)) return;
    if ((el.vr === "DA" || el.vr === "DT" || el.vr === "TM") && this.datesKept) {
      if (this.index.retainModifiedDates) this.clean(el, cs, path, "");
    } else if (mode === "dummy") {
      const before = displayValue(el, cs);
      setText(el, [String(this.rules.dummy[el.vr] ?? this.rules.dummy_text)], cs);
      this.record(path, el, "D", before, displayValue(el, cs));
    } else {
      this.scrub(el, cs, path);
    }
  }

  private async apply(
    ds: Dataset,
    el: Element,
    action: Action,
    mode: "keep" | "dummy" | "scrub",
    cs: string,
    path: string,
  ): Promise<void> {
    const tag = el.tag;
    if (action === "X") {
      const group = tag >>> 16;
      if (group >= 0x6000 && group <= 0x601e && (tag & 0xffff) === 0x3000) {
        // an overlay without its data is invalid: drop the group
        const prefix = path.slice(0, path.length - tagString(tag).length);
        for (const other of ds.elements.filter((e) => e.tag >>> 16 === group)) {
          const where = prefix + tagString(other.tag);
          this.record(where, other, "X", displayValue(other, cs, ds.little), null);
          remove(ds, other.tag);
        }
      } else {
        this.record(path, el, "X", displayValue(el, cs, ds.little), null);
        remove(ds, tag);
      }
      return;
    }
    if (el.items) {
      if (action === "Z") {
        this.record(path, el, "Z", displayValue(el, cs), el.items.length ? "0 item(s)" : displayValue(el, cs));
        el.items = [];
        return;
      }
      const inner = action === "D" ? "dummy" : action === "C" ? "scrub" : mode;
      for (const [i, item] of el.items.entries()) await this.walk(item, inner, cs, `${path}[${i}] > `);
      return;
    }
    if (action === "K" || isEmpty(el)) return;
    const before = displayValue(el, cs, ds.little);
    if (action === "Z") {
      setEmpty(el);
      this.record(path, el, "Z", before, "");
    } else if (action === "U") {
      await this.replaceUid(el, ds, cs, path);
    } else if (action === "D") {
      await this.dummy(el, ds, cs, path);
    } else if (action === "C") {
      this.clean(el, cs, path, before);
    }
  }

  private async replaceUid(el: Element, ds: Dataset, cs: string, path: string): Promise<void> {
    if (el.vr !== "UI") {
      await this.dummy(el, ds, cs, path);
      return;
    }
    const before = textValues(el, cs);
    const after = await Promise.all(before.map((v) => this.uid(v)));
    setText(el, after, cs);
    this.record(path, el, "U", before.join("\\"), after.join("\\"));
  }

  private async dummy(el: Element, ds: Dataset, cs: string, path: string): Promise<void> {
    if (el.vr === "UI") {
      await this.replaceUid(el, ds, cs, path);
      return;
    }
    const before = displayValue(el, cs, ds.little);
    const value = this.rules.dummy[el.vr];
    if (typeof value === "number") {
      setNumber(el, value, ds.little);
    } else if (isBinaryVR(el.vr) || el.tag === PIXEL_DATA || ["OD", "OF", "OL", "OV", "AT", "SV", "UV"].includes(el.vr)) {
      setBytes(el, new Uint8Array(BINARY_DUMMY[el.vr] ?? (el.vr === "AT" ? 4 : 8)));
    } else {
      setText(el, [String(value ?? this.rules.dummy_text)], cs);
    }
    this.record(path, el, "D", before, displayValue(el, cs, ds.little));
  }

  private clean(el: Element, cs: string, path: string, before: string): void {
    const b = before || displayValue(el, cs);
    if (el.vr === "DA" || el.vr === "DT") {
      const fn = el.vr === "DA" ? shiftDate : shiftDateTime;
      const out = textValues(el, cs)
        .map((v) => fn(v, this.shift))
        .filter((v): v is string => v !== null);
      setText(el, out, cs);
      this.record(path, el, "C", b, out.join("\\"));
    } else if (el.vr === "TM" || el.tag === 0x00080201) {
      return; // whole-day shifts leave times and offsets unchanged
    } else if (TEXT_VRS.has(el.vr)) {
      this.scrub(el, cs, path);
    }
  }

  private scrub(el: Element, cs: string, path: string): void {
    const pattern = this.pattern;
    if (pattern === null || !TEXT_VRS.has(el.vr) || ["DA", "DT", "TM"].includes(el.vr)) return;
    const before = textValues(el, cs);
    const after = before.map((v) => v.replace(pattern, this.rules.dummy_text));
    if (after.some((v, i) => v !== before[i])) {
      setText(el, after, cs);
      this.record(path, el, "C", before.join("\\"), after.join("\\"));
    }
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\\/-]/g, "\\$&");
}

/** The pattern of identifying words (the patient's names, IDs, institution...) to scrub from free text. */
export function scrubPattern(values: string[]): RegExp | null {
  const words = new Set(values.map((v) => v.trim()).filter((v) => v.length >= 3));
  const tokens = new Set(words);
  for (const w of words) for (const p of w.split(/[\^\s,]+/)) if (p.length >= 3) tokens.add(p);
  if (tokens.size === 0) return null;
  const sorted = [...tokens].sort((a, b) => b.length - a.length);
  return new RegExp(`(?<![A-Za-z0-9])(?:${sorted.map(escapeRegExp).join("|")})(?![A-Za-z0-9])`, "gi");
}

function identifyingValues(ds: Dataset, cs: string): string[] {
  const out: string[] = [];
  for (const [tag] of IDENTIFYING_KEYWORDS) {
    const el = find(ds, tag);
    if (el && !el.items) out.push(...textValues(el, cs));
  }
  return out;
}

function text(ds: Dataset, tag: number, cs: string): string {
  const el = find(ds, tag);
  return el && !el.items ? textValues(el, cs).join("\\") : "";
}

/**
 * De-identify one Part 10 file. Throws DicomParseError for files that are not DICOM Part 10.
 * The pixel data element is written back with the bytes it was read with.
 */
export async function deidentify(
  bytes: Uint8Array,
  rules: DeidRules,
  pseudonymFor: PseudonymSource,
): Promise<DeidResult> {
  const file: DicomFile = await readPart10(bytes);
  const ds = file.dataset;
  const cs = charsetOf(ds);
  const pixelBefore = find(ds, PIXEL_DATA)?.raw;
  const run = new Run(rules);

  const pid = text(ds, 0x00100020, cs);
  const name = text(ds, 0x00100010, cs);
  const pseudo = await pseudonymFor(await patientKey(rules.salt, pid || name));
  run.shift = pseudo.date_shift_days;
  run.pattern = scrubPattern(identifyingValues(ds, cs));
  const burnedIn = burnedInRisk(ds, cs);

  await run.walk(ds, "keep", cs, "");

  // the pseudonym in place of the patient's ID and name
  for (const [tag, vr, value] of [
    [0x00100020, "LO", pseudo.patient_id],
    [0x00100010, "PN", pseudo.patient_name],
  ] as const) {
    if (!rules.pseudonym_tags.includes(tagString(tag).replace(/[(),]/g, ""))) continue;
    const old = find(ds, tag);
    let before = old ? displayValue(old, cs) : "";
    const earlier = run.changes.findIndex((c) => c.path === tagString(tag));
    if (earlier >= 0) before = run.changes.splice(earlier, 1)[0].before;
    const el = textElement(tag, vr, [value], cs);
    put(ds, el);
    run.record(tagString(tag), el, "pseudonym", before, value);
  }
  mark(ds, rules, cs, run);

  // file meta: this implementation, the new SOP Instance UID, no sender's or private information
  const meta = file.meta;
  for (const tag of [0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102]) remove(meta, tag);
  put(meta, textElement(0x00020012, "UI", [IMPLEMENTATION_CLASS_UID]));
  put(meta, textElement(0x00020013, "SH", [IMPLEMENTATION_VERSION]));
  const sopInstanceUID = text(ds, 0x00080018, cs);
  if (sopInstanceUID) put(meta, textElement(0x00020003, "UI", [sopInstanceUID]));
  const sopClass = text(ds, 0x00080016, cs);
  if (sopClass && !find(meta, 0x00020002)) put(meta, textElement(0x00020002, "UI", [sopClass]));

  const out = await encodePart10(file);
  return {
    bytes: out,
    changes: run.changes,
    burnedIn,
    sopInstanceUID,
    studyInstanceUID: text(ds, 0x0020000d, cs),
    seriesInstanceUID: text(ds, 0x0020000e, cs),
    transferSyntax: file.transferSyntax,
    pseudonym: pseudo.patient_id,
    pixelDataKept: pixelBefore === undefined || find(ds, PIXEL_DATA)?.raw === pixelBefore,
  };
}

/** PatientIdentityRemoved, the method, its codes and LongitudinalTemporalInformationModified. */
function mark(ds: Dataset, rules: DeidRules, cs: string, run: Run): void {
  const set = (tag: number, vr: string, value: string): void => {
    const old = find(ds, tag);
    const before = old ? displayValue(old, cs) : "";
    const el = textElement(tag, vr, [value], cs);
    put(ds, el);
    run.record(tagString(tag), el, "set", before, value);
  };
  set(0x00120062, "CS", rules.patient_identity_removed);
  set(0x00120063, "LO", rules.deidentification_method);
  const items: Dataset[] = rules.deidentification_codes.map((code) => ({
    implicit: ds.implicit,
    little: ds.little,
    elements: [
      textElement(0x00080100, "SH", [code.value]),
      textElement(0x00080102, "SH", [code.scheme]),
      textElement(0x00080104, "LO", [code.meaning], cs),
    ],
  }));
  put(ds, { tag: 0x00120064, vr: "SQ", value: new Uint8Array(0), items });
  run.record(
    "(0012,0064)",
    { tag: 0x00120064, vr: "SQ", value: new Uint8Array(0) },
    "set",
    "",
    rules.deidentification_codes.map((c) => c.value).join(", "),
  );
  set(0x00280303, "CS", rules.longitudinal_temporal_information_modified);
}
