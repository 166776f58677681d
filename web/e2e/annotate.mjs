// Label editing on a real CT by two annotators in two browsers: annotator A creates a
// segmentation, imports the AI pre-label (a DICOM SEG in the archive), paints with the threshold
// brush, undoes and redoes, saves and reloads; annotator B, who loaded the same version, saves
// after A and gets the conflict. Prints what it saw; tests/web/test_annotate_e2e.py judges it
// against the server.
// --params: {"study", "series", "labelSet", "users": [[name, password], [name, password]],
//            "paint": [[col, row], [col, row]], "threshold": [lower, upper], "label": value,
//            "other": [[col, row], [col, row]], "rect": [[col, row], [col, row]], "sphere": [col, row]}
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { imageStats, launch, login, run } from "./lib.mjs";

const PANEL = "[data-testid=annotate]";

async function shot(page, path) {
  const data = await page.$eval("[data-viewport=stack] canvas", (canvas) => canvas.toDataURL("image/png"));
  const png = Buffer.from(data.split(",")[1], "base64");
  writeFileSync(path, png);
  return png;
}

async function paint(page, from, to) {
  const edits = await page.evaluate(() => window.carinaAnnotation.edits);
  const a = await page.evaluate(([c, r]) => window.carinaViewer.imageToPage(c, r), from);
  const b = await page.evaluate(([c, r]) => window.carinaViewer.imageToPage(c, r), to);
  await page.mouse.move(a[0], a[1]);
  await page.mouse.down();
  await page.waitForTimeout(50);
  const steps = 12;
  for (let i = 1; i <= steps; i++) {
    await page.mouse.move(a[0] + ((b[0] - a[0]) * i) / steps, a[1] + ((b[1] - a[1]) * i) / steps);
    await page.waitForTimeout(40);
  }
  await page.mouse.up();
  // the panel counted the edit (autosave may already have saved it)
  await page.waitForFunction((before) => window.carinaAnnotation.edits > before, edits, { timeout: 10000 });
  await page.waitForTimeout(300);
}

// waits for the panel to reach a state; a timeout reports the state it is in (and its message)
async function waitPanel(page, attributes, timeout = 30000) {
  try {
    await page.waitForSelector(`${PANEL}${attributes}`, { timeout });
  } catch (error) {
    const state = await page.$eval(PANEL, (el) => ({ ...el.dataset, text: el.querySelector("[data-testid=annot-status]")?.textContent }));
    throw new Error(`panel not ${attributes}: ${JSON.stringify(state)} (${error})`);
  }
}

const counts = (page) => page.evaluate(() => window.carinaAnnotation.counts());
// labelled voxels of one value per slice
const sliceCounts = (page, value) =>
  page.evaluate((v) => {
    const { values, shape } = window.carinaAnnotation.labelmap();
    const plane = shape[1] * shape[2];
    const out = [];
    for (let k = 0; k < shape[0]; k++) {
      let n = 0;
      for (let i = k * plane; i < (k + 1) * plane; i++) if (values[i] === v) n++;
      out.push(n);
    }
    return out;
  }, value);
const panelState = (page) => page.$eval(PANEL, (el) => ({ ...el.dataset }));

async function openStudy(page, url, seg) {
  await page.goto(url + (seg ? `&seg=${seg}` : ""));
  await page.waitForSelector("[data-viewport=stack][data-status=ready]", { timeout: 60000 });
  if (seg) await waitPanel(page, `[data-status=ready][data-seg="${seg}"]`, 60000);
  else await page.waitForSelector("[data-testid=annot-labelset] option", { state: "attached", timeout: 30000 });
}

await run(async (page, opts) => {
  const p = opts.params;
  const out = (name) => join(opts.out, `annotate-${name}`);
  const timings = {};
  let mark = Date.now();
  const lap = (name) => {
    timings[name] = (Date.now() - mark) / 1000;
    mark = Date.now();
  };
  const [userA, userB] = p.users;
  const studyUrl = `${opts.url}/p/${opts.project}/study/${p.study}?series=${p.series}`;

  // A: a new segmentation in the label set, then the AI pre-label imported as its first version
  await login(page, { ...opts, user: userA[0], password: userA[1] });
  await openStudy(page, studyUrl, null);
  await page.selectOption("[data-testid=annot-labelset]", p.labelSet);
  await page.fill("[data-testid=annot-name]", "tumour edit");
  await page.click("[data-testid=annot-create]");
  await waitPanel(page, `[data-status=ready][data-seg]`, 30000);
  const created = await panelState(page);
  await page.fill("[data-testid=annot-model]", "lung-threshold v1");
  await page.click("[data-testid=annot-prelabel]");
  await waitPanel(page, `[data-status=ready][data-number="1"]`, 60000);
  await page.waitForTimeout(500);
  const prelabel = { ...(await panelState(page)), counts: await counts(page) };
  const prelabelShot = await imageStats(page, await shot(page, out("prelabel.png")));
  lap("prelabel");

  // B: the same segmentation at the same version, in another browser
  const second = await launch();
  const pageB = second.page;
  let b = {};
  try {
    await login(pageB, { ...opts, user: userB[0], password: userB[1] });
    await openStudy(pageB, studyUrl, created.seg);
    b.loaded = await panelState(pageB);
    lap("secondBrowser");

    // A: the threshold brush with the test's HU range on the chosen label, undo and redo
    await page.click(`[data-testid=annot-label][value="${p.label}"]`);
    await page.fill("[data-testid=annot-threshold-lower]", String(p.threshold[0]));
    await page.dispatchEvent("[data-testid=annot-threshold-lower]", "change");
    await page.fill("[data-testid=annot-threshold-upper]", String(p.threshold[1]));
    await page.dispatchEvent("[data-testid=annot-threshold-upper]", "change");
    await page.click("[data-annot-tool=ThresholdBrush]");
    await paint(page, p.paint[0], p.paint[1]);
    const painted = await counts(page);
    await shot(page, out("painted.png"));
    await page.click("[data-testid=annot-undo]");
    await page.waitForTimeout(300);
    const undone = await counts(page);
    await page.keyboard.press("Control+Shift+Z"); // redo from the keyboard
    await page.waitForTimeout(300);
    const redone = await counts(page);
    await page.fill("[data-testid=annot-comment]", "tumour by threshold brush");
    await page.click("[data-testid=annot-save]");
    await waitPanel(page, `[data-status=saved]`, 30000);
    const saved = await panelState(page);
    const history = await page.$$eval("[data-testid=annot-history] li", (items) => items.map((li) => li.textContent));
    lap("paintAndSave");

    // A: reload the page: the segmentation opens at its new head, with the edit
    await page.reload();
    await waitPanel(page, `[data-status=ready][data-number="${saved.number}"]`, 60000);
    await page.waitForTimeout(500);
    const reloaded = { ...(await panelState(page)), counts: await counts(page) };
    await page.screenshot({ path: out("reloaded.png") }).catch(() => undefined);
    lap("reload");

    // A: the other tools on the reloaded head (not saved): with the lung label locked a rectangle
    // fill of the tumour label leaves the lung alone; the eraser takes voxels away; the 3D brush
    // paints the neighbouring slices too
    // (with autosave every 3 s: the page opened again with ?autosave=3)
    await page.goto(`${page.url()}&autosave=3`);
    await waitPanel(page, `[data-status=ready][data-number="${saved.number}"][data-autosave="3"]`, 60000);
    const tools = { before: await sliceCounts(page, 2), counts0: await counts(page) };
    await page.click(`[data-testid=annot-label][value="${p.label}"]`);
    await page.check('[data-testid=annot-lock][data-lock="1"]');
    await page.click("[data-annot-tool=RectangleScissors]");
    await paint(page, p.rect[0], p.rect[1]);
    tools.rect = await counts(page);
    await page.uncheck('[data-testid=annot-lock][data-lock="1"]');
    await page.click("[data-annot-tool=Eraser]");
    await paint(page, p.paint[0], p.paint[1]);
    tools.erased = await counts(page);
    await page.$eval("[data-testid=annot-brush-size]", (input) => {
      input.value = "20";
      input.dispatchEvent(new Event("input"));
    });
    await page.click("[data-annot-tool=SphereBrush]");
    await paint(page, p.sphere, [p.sphere[0] + 2, p.sphere[1]]);
    tools.sphere = await sliceCounts(page, 2);
    await shot(page, out("tools.png"));
    // autosave catches up: nothing left unsaved, the head is what the page holds
    await waitPanel(page, `[data-dirty="0"][data-status=saved]`, 20000);
    tools.autosaved = await panelState(page);
    tools.final = await counts(page);
    lap("tools");

    // B: edits from the version it loaded and saves after A: the conflict, no overwrite
    await pageB.click("[data-annot-tool=Brush]");
    await paint(pageB, p.other[0], p.other[1]);
    b.edited = await counts(pageB);
    await pageB.click("[data-testid=annot-save]");
    await waitPanel(pageB, `[data-status=conflict]`, 30000);
    b.conflict = await pageB.$eval("[data-testid=annot-conflict]", (el) => ({ text: el.textContent, ...el.dataset, hidden: el.hidden }));
    b.afterConflict = await panelState(pageB);
    await pageB.screenshot({ path: out("conflict.png") }).catch(() => undefined);
    await pageB.click("[data-testid=annot-load-head]");
    await waitPanel(pageB, `[data-status=ready][data-version="${b.conflict.head}"]`, 30000);
    b.head = { ...(await panelState(pageB)), counts: await counts(pageB) };
    b.pageErrors = second.errors;
    lap("conflict");
    return { created, prelabel, prelabelShot, painted, undone, redone, saved, history, reloaded, tools, b, timings };
  } finally {
    await second.close();
  }
});
