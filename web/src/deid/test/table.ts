// Resolve the server's Annex E table (src/carina/deid/profiles/annex_e.csv) into the rules
// document GET /api/projects/{project}/deid/rules returns, for tests that run without a server.
// The product reads the rules from the server; this mirrors carina.deid.profile's option logic.
import { readFileSync } from "node:fs";
import { lookup } from "../dictionary";
import type { Action, DeidRules, Rule } from "../rules";

const CID_7050: Record<string, [string, string]> = {
  basic: ["113100", "Basic Application Confidentiality Profile"],
  clean_pixel_data: ["113101", "Clean Pixel Data Option"],
  clean_graphics: ["113103", "Clean Graphics Option"],
  clean_structured_content: ["113104", "Clean Structured Content Option"],
  clean_descriptors: ["113105", "Clean Descriptors Option"],
  retain_long_full_dates: ["113106", "Retain Longitudinal Temporal Information Full Dates Option"],
  retain_long_modified_dates: ["113107", "Retain Longitudinal Temporal Information Modified Dates Option"],
  retain_patient_characteristics: ["113108", "Retain Patient Characteristics Option"],
  retain_device_identity: ["113109", "Retain Device Identity Option"],
  retain_uids: ["113110", "Retain UIDs Option"],
  retain_safe_private: ["113111", "Retain Safe Private Option"],
  retain_institution_identity: ["113112", "Retain Institution Identity Option"],
};
const OPTION_ORDER = [
  "retain_safe_private",
  "retain_uids",
  "retain_device_identity",
  "retain_institution_identity",
  "retain_patient_characteristics",
  "retain_long_full_dates",
  "retain_long_modified_dates",
  "clean_descriptors",
  "clean_structured_content",
  "clean_graphics",
  "clean_pixel_data",
];
const SEQUENCE_OVERRIDES: Record<string, Partial<Record<Action, Action>>> = {
  AcquisitionContextSequence: { X: "Z" },
  ReferencedPerformedProcedureStepSequence: { X: "U" },
};

export const REPO_ROOT = new URL("../../../../", import.meta.url).pathname;

function chooseBasic(basic: string, sequence: boolean): Action {
  const parts = basic.replace(/\*/g, "").split("/");
  if (parts.includes("U")) return "U";
  if (sequence && parts.includes("X")) return "X";
  for (const code of ["D", "Z", "X", "K", "C"] as const) if (parts.includes(code)) return code;
  throw new Error(`unknown profile action ${basic}`);
}

function action(row: Record<string, string>, options: string[], sequence: boolean): Action {
  const codes = new Set(options.map((o) => row[o]).filter((c) => c));
  for (const code of ["K", "C", "X"] as const) if (codes.has(code)) return code;
  return chooseBasic(row.basic, sequence);
}

export function rulesFromTable(options: string[], salt: string): DeidRules {
  const text = readFileSync(`${REPO_ROOT}src/carina/deid/profiles/annex_e.csv`, "utf-8");
  const lines = text.split("\n").filter((l) => l && !l.startsWith("#"));
  const header = lines[0].split(",");
  const rows = lines.slice(1).map((line) => {
    const m = /^"([^"]*)",(.*)$/.exec(line);
    const cells = m ? [m[1], ...m[2].split(",")] : line.split(",");
    return Object.fromEntries(header.map((h, i) => [h, cells[i] ?? ""]));
  });
  const rules: Rule[] = [];
  let curve = "X";
  let overlay = "X";
  let privateAction = "X";
  for (const row of rows) {
    if (row.tag.startsWith("(gggg")) privateAction = action(row, options, false);
    else if (row.tag.startsWith("(50xx")) curve = action(row, options, false);
    else if (row.tag === "(60xx,3000)") overlay = action(row, options, false);
    else if (!row.tag.startsWith("(60xx")) {
      const tag = parseInt(row.tag.slice(1, 5) + row.tag.slice(6, 10), 16) >>> 0;
      const vr = lookup(tag)?.vr ?? "UN";
      let act = action(row, options, vr === "SQ");
      if (vr === "SQ") act = SEQUENCE_OVERRIDES[row.keyword]?.[act] ?? act;
      rules.push({ tag: tag.toString(16).toUpperCase().padStart(8, "0"), keyword: row.keyword, vr, action: act });
    }
  }
  const active = OPTION_ORDER.filter((o) => options.includes(o));
  const safe = options.includes("retain_safe_private")
    ? readFileSync(`${REPO_ROOT}src/carina/deid/profiles/safe_private.csv`, "utf-8")
        .split("\n")
        .filter((l) => l && !l.startsWith("#") && !l.startsWith("creator,"))
        .map((l) => {
          const [creator, group, offset] = l.split(",");
          return { creator, group, offset };
        })
    : [];
  return {
    profile: "basic",
    edition: "DICOM PS3.15 2024b Table E.1-1",
    options: active,
    rules,
    remove_private: privateAction === "X",
    remove_curves: curve === "X",
    remove_overlays: overlay === "X",
    safe_private: safe,
    pseudonym_tags: ["00100010", "00100020"],
    dummy: { PN: "ANONYMOUS", DA: "19000101", TM: "000000", DT: "19000101000000", AS: "000Y", AE: "ANONYMOUS", IS: "0", DS: "0", US: 0, SS: 0, UL: 0, SL: 0, FL: 0, FD: 0 },
    dummy_text: "ANONYMIZED",
    uid_root: "2.25",
    salt,
    patient_identity_removed: "YES",
    deidentification_method: "Carina DICOM PS3.15 2024b Table E.1-1",
    deidentification_codes: ["basic", ...active.filter((o) => o in CID_7050)].map((o) => ({
      value: CID_7050[o][0],
      scheme: "DCM",
      meaning: CID_7050[o][1],
    })),
    longitudinal_temporal_information_modified: options.includes("retain_long_full_dates")
      ? "UNMODIFIED"
      : options.includes("retain_long_modified_dates")
        ? "MODIFIED"
        : "REMOVED",
  };
}
