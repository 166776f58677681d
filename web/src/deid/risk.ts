// Signs that the pixels of an object may carry burned-in identifying text, as the server's
// carina.deid.burned_in_risk reads them.
import { type Dataset, PIXEL_DATA, find, textValues } from "./dicom";

const SECONDARY_CAPTURE_CLASSES = new Set([
  "1.2.840.10008.5.1.4.1.1.7",
  "1.2.840.10008.5.1.4.1.1.7.1",
  "1.2.840.10008.5.1.4.1.1.7.2",
  "1.2.840.10008.5.1.4.1.1.7.3",
  "1.2.840.10008.5.1.4.1.1.7.4",
]);
const RISKY_MODALITIES = new Set(["US", "IVUS", "ES", "XC", "OT", "DOC", "SC", "GM", "OP"]);
const RISKY_CONVERSION_TYPES = new Set(["WSD", "SD", "DI", "DF", "DV", "SI"]);

function values(ds: Dataset, tag: number, cs: string): string[] {
  const el = find(ds, tag);
  return el && !el.items ? textValues(el, cs) : [];
}

/** Reasons why the pixels of ``ds`` may carry burned-in identifying text (empty: none). */
export function burnedInRisk(ds: Dataset, cs: string): string[] {
  if (!find(ds, PIXEL_DATA)) return [];
  const reasons: string[] = [];
  const burned = values(ds, 0x00280301, cs).join("\\").toUpperCase();
  if (burned === "YES") reasons.push("BurnedInAnnotation=YES");
  if (burned === "NO") return reasons;
  const modality = values(ds, 0x00080060, cs).join("\\").toUpperCase();
  if (RISKY_MODALITIES.has(modality)) reasons.push(`Modality=${modality}`);
  if (SECONDARY_CAPTURE_CLASSES.has(values(ds, 0x00080016, cs)[0] ?? "")) {
    reasons.push("secondary capture SOP class");
  }
  const conversion = values(ds, 0x00080064, cs).join("\\").toUpperCase();
  if (RISKY_CONVERSION_TYPES.has(conversion)) reasons.push(`ConversionType=${conversion}`);
  if (values(ds, 0x00080008, cs).some((v) => v.toUpperCase().includes("SCREEN"))) {
    reasons.push("ImageType screen capture");
  }
  return reasons;
}
