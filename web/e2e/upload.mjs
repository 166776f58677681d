// Upload with de-identification in the browser: sign in, drop the fake-PHI DICOMs, the 30-slice
// lung CT and a text file (a real drop event whose DataTransfer holds File objects), read the
// preview, accept the files with burned-in text risk, upload, land on the worklist.
// The data folder is $CARINA_SHARED_DATA (default ../shared/data beside the repository).
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { login, run } from "./lib.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const DATA = process.env.CARINA_SHARED_DATA || join(ROOT, "..", "shared", "data");
const PHI = join(DATA, "deid_fake_phi");
const CT = join(DATA, "lung_ct_tumor_boxes", "ct_dicom");

const files = [
  ...[1, 2, 3, 4, 5, 6, 7].map((i) => join(PHI, "dicom-cookies", `image${i}.dcm`)),
  join(PHI, "humans", "ctbrain1.dcm"),
  join(PHI, "ultrasounds", "GREYSCALE_IMAGE.dcm"),
  join(PHI, "ultrasounds", "RGB_IMAGE.dcm"),
  join(PHI, "examples", "MR_with_sequences.dcm"),
  join(PHI, "PROVENANCE.md"),
  ...readdirSync(CT)
    .filter((f) => f.endsWith(".dcm"))
    .sort()
    .map((f) => join(CT, f)),
];

await run(async (page, opts) => {
  const timings = {};
  let t0 = Date.now();
  await page.goto(`${opts.url}/p/${opts.project}/upload`);
  await login(page, opts, false);
  await page.waitForSelector("[data-testid=upload-drop]");
  timings.login = (Date.now() - t0) / 1000;

  // a real drop event: a DataTransfer holding File objects made from the files' bytes
  t0 = Date.now();
  const payload = files.map((f) => ({
    name: f.startsWith(CT) ? `ct_dicom/${f.slice(CT.length + 1)}` : f.slice(PHI.length + 1).replace(/^.*\//, ""),
    data: readFileSync(f).toString("base64"),
  }));
  const dataTransfer = await page.evaluateHandle((items) => {
    const transfer = new DataTransfer();
    for (const item of items) {
      const binary = atob(item.data);
      const bytes = new Uint8Array(binary.length);
      for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
      transfer.items.add(new File([bytes], item.name, { type: "application/dicom" }));
    }
    return transfer;
  }, payload);
  await page.dispatchEvent("[data-testid=upload-drop]", "dragover", { dataTransfer });
  await page.dispatchEvent("[data-testid=upload-drop]", "drop", { dataTransfer });
  const dicomCount = files.filter((f) => f.endsWith(".dcm")).length;
  await page.waitForFunction(
    (n) => {
      const cells = [...document.querySelectorAll("[data-testid=upload-result]")];
      return cells.length === n && cells.every((c) => c.getAttribute("data-state") !== "reading");
    },
    dicomCount,
    { timeout: 60000 },
  );
  timings.deidentify = (Date.now() - t0) / 1000;

  // the preview: per file its pseudonym, its changes (before/after) and its state
  const preview = await page.$$eval("[data-testid=upload-preview] > tbody > tr.file", (trs) =>
    trs.map((tr) => {
      const detail = tr.nextElementSibling;
      const change = (kw) => {
        const row = detail.querySelector(`[data-testid=upload-changes] tr[data-keyword=${kw}]`);
        return row ? [...row.querySelectorAll("td")].map((td) => td.textContent) : null;
      };
      return {
        path: tr.getAttribute("data-path"),
        state: tr.querySelector("[data-testid=upload-result]").getAttribute("data-state"),
        flag: tr.querySelector("[data-testid=upload-flag]")?.textContent ?? "",
        pseudonym: tr.querySelector("[data-testid=upload-pseudonym]").textContent,
        changes: detail.querySelectorAll("[data-testid=upload-changes] tbody tr").length,
        patientName: change("PatientName"),
        institutionAddress: change("InstitutionAddress"),
      };
    }),
  );
  const skipped = await page.$$eval("[data-testid=upload-skipped-file]", (li) => li.map((x) => x.textContent));
  const buttonBefore = await page.textContent("[data-testid=upload-start]");
  // open the preview of one file, for the picture
  await page.click("[data-path='ctbrain1.dcm'] [data-testid=upload-show-changes]");
  await page.locator("[data-path='ctbrain1.dcm']").scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(opts.out, "upload-preview.png"), fullPage: false });

  // accept the files with burned-in text risk, then upload, watching the progress bar
  await page.check("[data-testid=upload-allow-burned-in]");
  const buttonAfter = await page.textContent("[data-testid=upload-start]");
  await page.evaluate(() => {
    const bar = document.querySelector("[data-testid=upload-progress]");
    window.__progress = [];
    new MutationObserver(() => window.__progress.push([bar.value, bar.max])).observe(bar, { attributes: true });
  });
  t0 = Date.now();
  await page.click("[data-testid=upload-start]");
  // all stored: the app calls onUploaded and goes to the worklist
  await page.waitForURL(`**/p/${opts.project}`, { timeout: 60000 });
  timings.upload = (Date.now() - t0) / 1000;
  const progressSeen = await page.evaluate(() => window.__progress ?? null);
  await page.waitForSelector("[data-testid=worklist] tbody tr[data-study]");
  const worklist = await page.$$eval("[data-testid=worklist] tbody tr[data-study]", (trs) =>
    trs.map((tr) => ({ study: tr.getAttribute("data-study"), text: tr.textContent })),
  );
  await page.screenshot({ path: join(opts.out, "upload-worklist.png") });

  // a second upload, through the file input: slice 001 with another SliceThickness has the same
  // (de-identified) SOP Instance UID as the one stored, and other content: the server refuses it
  const changed = Buffer.from(readFileSync(join(CT, "001.dcm")));
  const at = changed.indexOf(Buffer.from([0x18, 0x00, 0x50, 0x00, 0x44, 0x53]));
  if (at < 0) throw new Error("no SliceThickness in 001.dcm");
  const value = at + 8;
  changed[value] = changed[value] === 0x39 ? 0x38 : 0x39;
  await page.click("nav a:text('Upload')");
  await page.waitForSelector("[data-testid=upload-input]");
  await page.setInputFiles("[data-testid=upload-input]", {
    name: "changed-001.dcm",
    mimeType: "application/dicom",
    buffer: changed,
  });
  await page.waitForSelector("[data-testid=upload-result][data-state=ready]");
  await page.click("[data-testid=upload-start]");
  await page.waitForSelector("[data-testid=upload-result][data-state=failed]", { timeout: 30000 });
  const conflict = {
    result: await page.textContent("[data-testid=upload-result]"),
    error: await page.textContent("[data-testid=upload-error]"),
    doneVisible: await page.isVisible("[data-testid=upload-done]"),
    url: new URL(page.url()).pathname,
  };
  await page.screenshot({ path: join(opts.out, "upload-conflict.png") });

  // a whole folder through the folder input: the CT again, already stored, so all is well
  await page.click("[data-testid=upload-clear]");
  t0 = Date.now();
  await page.setInputFiles("[data-testid=upload-folder-input]", CT);
  await page.waitForFunction(() => {
    const cells = [...document.querySelectorAll("[data-testid=upload-result]")];
    return cells.length === 30 && cells.every((c) => c.getAttribute("data-state") === "ready");
  });
  const folderPaths = await page.$$eval("[data-testid=upload-preview] > tbody > tr.file", (trs) =>
    trs.map((tr) => tr.getAttribute("data-path")),
  );
  await page.click("[data-testid=upload-start]");
  await page.waitForURL(`**/p/${opts.project}`, { timeout: 60000 });
  timings.folder = (Date.now() - t0) / 1000;
  return { preview, skipped, buttonBefore, buttonAfter, progressSeen, worklist, conflict, folderPaths, timings };
});
