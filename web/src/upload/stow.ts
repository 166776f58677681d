// STOW-RS results per file, from the response's ReferencedSOPSequence and FailedSOPSequence.
import type { DicomJson } from "../api/client";

// PS3.18 / PS3.4 failure reasons the server answers with
const REASONS: Record<number, string> = {
  0x0111: "already stored with other content (duplicate SOP Instance UID)",
  0x0122: "SOP class not supported",
  0xa700: "the server is out of resources",
  0xa900: "its StudyInstanceUID does not match the study",
  0xc000: "the server cannot understand it",
  0xc001: "its study is stored but is not part of this project",
  0xc122: "not an application/dicom part",
};

export function reasonText(code: number | undefined): string {
  if (code === undefined) return "failed (no reason given)";
  const hex = `0x${code.toString(16).toUpperCase().padStart(4, "0")}`;
  return `${REASONS[code] ?? "failed"} (${hex})`;
}

export interface StowOutcome {
  stored: Set<string>;
  failed: Map<string, string>;
  /** Failures the server could not tie to a SOP Instance UID. */
  anonymous: string[];
}

function items(body: DicomJson, tag: string): DicomJson[] {
  return (body[tag]?.Value ?? []) as DicomJson[];
}

function first(item: DicomJson, tag: string): unknown {
  return item[tag]?.Value?.[0];
}

/** The SOP Instance UIDs stored and those that failed (with the reason), from a STOW-RS answer. */
export function stowOutcome(body: DicomJson): StowOutcome {
  const outcome: StowOutcome = { stored: new Set(), failed: new Map(), anonymous: [] };
  for (const item of items(body, "00081199")) {
    const uid = first(item, "00081155");
    if (typeof uid === "string") outcome.stored.add(uid);
  }
  for (const item of items(body, "00081198")) {
    const uid = first(item, "00081155");
    const reason = reasonText(first(item, "00081197") as number | undefined);
    if (typeof uid === "string") outcome.failed.set(uid, reason);
    else outcome.anonymous.push(reason);
  }
  return outcome;
}

/** Split files into batches of at most `count` files and `bytes` bytes (a larger file alone). */
export function batches<T extends { size: number }>(files: T[], count = 20, bytes = 64 * 1024 * 1024): T[][] {
  const out: T[][] = [];
  let current: T[] = [];
  let size = 0;
  for (const f of files) {
    if (current.length && (current.length >= count || size + f.size > bytes)) {
      out.push(current);
      current = [];
      size = 0;
    }
    current.push(f);
    size += f.size;
  }
  if (current.length) out.push(current);
  return out;
}
