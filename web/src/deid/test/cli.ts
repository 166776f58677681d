// De-identify files as the browser does, from the command line (used by tests/web/test_upload_deid.py).
// Reads a JSON job on stdin: {"rules": <rules document of the server>,
// "pseudonyms": {"<key>": {"patient_id", "patient_name", "date_shift_days"}},
// "files": [["in.dcm", "out.dcm"], ...]}. Prints one JSON line per file:
// {"source", "key", "changes", "burned_in"} or {"source", "error"}.
import { readFileSync, writeFileSync } from "node:fs";
import { deidentify } from "../engine";
import type { DeidRules, PatientPseudonym } from "../rules";

interface Job {
  rules: DeidRules;
  pseudonyms: Record<string, PatientPseudonym>;
  files: [string, string][];
}

async function main(): Promise<void> {
  const job = JSON.parse(readFileSync(0, "utf-8")) as Job;
  const rules = job.rules;
  for (const [source, target] of job.files) {
    let usedKey = "";
    try {
      const result = await deidentify(new Uint8Array(readFileSync(source)), rules, async (key) => {
        usedKey = key;
        const found = job.pseudonyms[key];
        if (!found) throw new Error(`no pseudonym for key ${key}`);
        return found;
      });
      writeFileSync(target, result.bytes);
      console.log(JSON.stringify({ source, key: usedKey, changes: result.changes, burned_in: result.burnedIn }));
    } catch (exc) {
      console.log(JSON.stringify({ source, error: String(exc) }));
    }
  }
}

await main();
