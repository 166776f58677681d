// The resolved rules the server gives for a project (GET /api/projects/{project}/deid/rules).

export type Action = "D" | "Z" | "X" | "K" | "C" | "U";

export interface Rule {
  tag: string; // 8 hex digits
  keyword: string;
  vr: string;
  action: Action;
}

export interface DeidRules {
  profile: string;
  edition: string;
  options: string[];
  rules: Rule[];
  remove_private: boolean;
  remove_curves: boolean;
  remove_overlays: boolean;
  safe_private: { creator: string; group: string; offset: string }[];
  pseudonym_tags: string[];
  dummy: Record<string, string | number>;
  dummy_text: string;
  uid_root: string;
  salt: string;
  patient_identity_removed: string;
  deidentification_method: string;
  deidentification_codes: { value: string; scheme: string; meaning: string }[];
  longitudinal_temporal_information_modified: string;
}

export interface PatientPseudonym {
  patient_id: string;
  patient_name: string;
  date_shift_days: number;
}

export interface RuleIndex {
  actions: Map<number, Action>;
  /** "creator|group|offset" (group and offset as numbers) of the private elements kept. */
  safePrivate: Set<string>;
  removeCurves: boolean;
  removeOverlays: boolean;
  retainFullDates: boolean;
  retainModifiedDates: boolean;
}

const ACTIONS = new Set(["D", "Z", "X", "K", "C", "U"]);

/** Check the shape of a rules document and index it by tag. */
export function indexRules(rules: DeidRules): RuleIndex {
  if (!Array.isArray(rules.rules) || typeof rules.salt !== "string" || !/^[0-9a-f]{64}$/.test(rules.salt)) {
    throw new Error("de-identification rules without a rule list or a 64-hex-digit salt");
  }
  const actions = new Map<number, Action>();
  for (const r of rules.rules) {
    if (!/^[0-9A-Fa-f]{8}$/.test(r.tag) || !ACTIONS.has(r.action)) {
      throw new Error(`bad de-identification rule ${JSON.stringify(r)}`);
    }
    actions.set(parseInt(r.tag, 16) >>> 0, r.action);
  }
  return {
    actions,
    safePrivate: new Set(
      (rules.safe_private ?? []).map((s) => `${s.creator}|${parseInt(s.group, 16)}|${parseInt(s.offset, 16)}`),
    ),
    removeCurves: rules.remove_curves !== false,
    removeOverlays: rules.remove_overlays !== false,
    retainFullDates: rules.options.includes("retain_long_full_dates"),
    retainModifiedDates: rules.options.includes("retain_long_modified_dates"),
  };
}
