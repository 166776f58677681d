// The DICOM data dictionary (VR and keyword per tag), taken from dcmjs.
import dcmjs from "dcmjs";

export interface DictEntry {
  vr: string;
  keyword: string;
}

let byTag: Map<number, DictEntry> | null = null;

// dcmjs writes the VR of multi-VR attributes with its own codes.
const MULTI_VR: Record<string, string> = { ox: "OB", xs: "US", lt: "OW", up: "UL", na: "UN" };

function load(): Map<number, DictEntry> {
  const map = new Map<number, DictEntry>();
  const nameMap = (dcmjs as DcmjsModule).data.DicomMetaDictionary.nameMap;
  for (const entry of Object.values(nameMap)) {
    const m = /^\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)$/.exec(entry.tag);
    if (!m) continue;
    const tag = parseInt(m[1] + m[2], 16) >>> 0;
    const keyword = entry.name.replace(/^RETIRED_/, "");
    map.set(tag, { vr: MULTI_VR[entry.vr] ?? entry.vr, keyword });
  }
  return map;
}

/** Dictionary entry of a tag; repeating groups (50xx, 60xx) resolve to their first group. */
export function lookup(tag: number): DictEntry | undefined {
  byTag ??= load();
  const found = byTag.get(tag >>> 0);
  if (found) return found;
  const group = tag >>> 16;
  if ((group >= 0x5000 && group <= 0x50ff) || (group >= 0x6000 && group <= 0x60ff)) {
    return byTag.get((((group & 0xff00) << 16) | (tag & 0xffff)) >>> 0);
  }
  return undefined;
}

export function keywordOf(tag: number): string {
  if ((tag >>> 16) & 1) return (tag & 0xffff) < 0x100 ? "PrivateCreator" : "Private";
  return lookup(tag)?.keyword ?? "";
}

export function tagString(tag: number): string {
  const hex = (tag >>> 0).toString(16).toUpperCase().padStart(8, "0");
  return `(${hex.slice(0, 4)},${hex.slice(4)})`;
}

interface DcmjsModule {
  data: {
    DicomMetaDictionary: {
      nameMap: Record<string, { tag: string; vr: string; name: string }>;
    };
  };
}
