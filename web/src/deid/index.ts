export { deidentify, patientKey, replacementUid, shiftDate, shiftDateTime, scrubPattern } from "./engine";
export type { Change, DeidResult, PseudonymSource } from "./engine";
export { DicomParseError, encodePart10, isPart10, parsePart10, readPart10, writePart10 } from "./dicom";
export { burnedInRisk } from "./risk";
export type { Action, DeidRules, PatientPseudonym, Rule } from "./rules";
