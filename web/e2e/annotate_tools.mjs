// The panel's own editing tools on a real CT, each saved as a version: click region growing of
// one lung (the server's grow endpoint), a 2D bucket fill by HU range of the other lung, a polygon
// fill of the tumour with the lung label locked (undone and redone), brush dots made islands and
// removed by "remove islands" and "keep largest", a second tumour polygon on another slice and
// the interpolation between the two, and a 3D bucket fill; then a segmentation whose label set has
// a value above 255 (16-bit label maps). Prints what it saw (what the
// panel reports of each edit); tests/web/test_annotate_tools_e2e.py judges the saved versions
// against the CT.
// --params: {"study", "series", "labelSet", "tumour": value, "lung": value,
//            "grow": [col, row], "polygon": [[x, y], ...], "bucket": [col, row], "range": [lo, hi],
//            "dots": [[col, row], ...], "islandSize": voxels, "polygon2": [[x, y], ...], "slice2": k,
//            "wide": {"labelSet", "high": value above 255}}
import { join } from "node:path";
import { imageStats, login, run } from "./lib.mjs";

const PANEL = "[data-testid=annotate]";

async function waitPanel(page, attributes, timeout = 30000) {
  try {
    await page.waitForSelector(`${PANEL}${attributes}`, { timeout });
  } catch (error) {
    const state = await page.$eval(PANEL, (el) => ({ ...el.dataset, text: el.querySelector("[data-testid=annot-status]")?.textContent }));
    throw new Error(`panel not ${attributes}: ${JSON.stringify(state)} (${error})`);
  }
}

const edits = (page) => page.evaluate(() => window.carinaAnnotation.edits);
const counts = (page) => page.evaluate(() => window.carinaAnnotation.counts());
const lastEdit = (page) => page.evaluate(() => window.carinaAnnotation.lastEdit);
// the page position of an image point, with the page scrolled back to the viewer (clicks in the
// panel scroll it down)
const toPage = (page, [x, y]) =>
  page.evaluate(([c, r]) => {
    window.scrollTo(0, 0);
    return window.carinaViewer.imageToPage(c, r);
  }, [x, y]);

// waits until the panel counted one more edit (or reports its status)
async function edited(page, before, timeout = 30000) {
  try {
    await page.waitForFunction((n) => window.carinaAnnotation.edits > n, before, { timeout });
  } catch (error) {
    const text = await page.$eval("[data-testid=annot-status]", (el) => el.textContent);
    throw new Error(`no edit counted: ${text} (${error})`);
  }
  await page.waitForTimeout(200);
}

// a short brush stroke at a point (the brush paints while the button is down and moving)
async function dab(page, point) {
  const before = await edits(page);
  const [x, y] = await toPage(page, point);
  await page.mouse.move(x, y);
  await page.mouse.down();
  for (let i = 1; i <= 3; i++) {
    await page.mouse.move(x + i, y);
    await page.waitForTimeout(30);
  }
  await page.mouse.up();
  await edited(page, before);
}

async function click(page, point) {
  const before = await edits(page);
  const [x, y] = await toPage(page, point);
  await page.mouse.click(x, y);
  await edited(page, before);
}

// draws a closed outline through the vertices (image coordinates), a few mouse moves an edge
async function outline(page, vertices) {
  const before = await edits(page);
  const points = [];
  for (const v of vertices) points.push(await toPage(page, v));
  await page.mouse.move(points[0][0], points[0][1]);
  await page.mouse.down();
  await page.waitForTimeout(50);
  const steps = 6;
  for (let i = 0; i < points.length; i++) {
    const [a, b] = [points[i], points[(i + 1) % points.length]];
    for (let s = 1; s <= steps; s++) {
      await page.mouse.move(a[0] + ((b[0] - a[0]) * s) / steps, a[1] + ((b[1] - a[1]) * s) / steps);
      await page.waitForTimeout(15);
    }
  }
  await page.mouse.up();
  await edited(page, before);
}

async function save(page, number, comment) {
  await page.fill("[data-testid=annot-comment]", comment);
  await page.click("[data-testid=annot-save]");
  await waitPanel(page, `[data-status=saved][data-number="${number}"]`);
}

async function shot(page, path) {
  const box = await page.$eval("[data-viewport=stack]", (el) => {
    window.scrollTo(0, 0);
    const r = el.getBoundingClientRect();
    return { x: r.left, y: r.top, width: r.width, height: r.height };
  });
  return page.screenshot({ path, clip: box });
}

const setLabel = (page, value) => page.click(`[data-testid=annot-label][value="${value}"]`);
const tool = (page, name) => page.click(`[data-annot-tool=${name}]`);

await run(async (page, opts) => {
  const p = opts.params;
  const out = (name) => join(opts.out, `annotate-tools-${name}`);
  const timings = {};
  let mark = Date.now();
  const lap = (name) => {
    timings[name] = (Date.now() - mark) / 1000;
    mark = Date.now();
  };
  const result = { timings };

  await login(page, opts);
  await page.goto(`${opts.url}/p/${opts.project}/study/${p.study}?series=${p.series}`);
  await page.waitForSelector("[data-viewport=stack][data-status=ready]", { timeout: 60000 });
  await page.waitForSelector("[data-testid=annot-labelset] option", { state: "attached", timeout: 30000 });
  await page.selectOption("[data-testid=annot-labelset]", p.labelSet);
  await page.fill("[data-testid=annot-name]", "tools");
  await page.click("[data-testid=annot-create]");
  await waitPanel(page, "[data-status=ready][data-seg]");
  result.seg = await page.$eval(PANEL, (el) => el.dataset.seg);
  result.slice = Number(await page.getAttribute("[data-viewport=stack]", "data-index"));
  lap("open");

  // 1. click region growing in a lung: the server's region, as the lung label
  await setLabel(page, p.lung);
  await tool(page, "Grow");
  await click(page, p.grow);
  result.grow = await lastEdit(page);
  await shot(page, out("grow.png"));
  await save(page, 1, "lung grown from a click");
  lap("grow");

  // 2. bucket fill of the other lung on the slice: the HU range's connected region
  await page.fill("[data-testid=annot-threshold-lower]", String(p.range[0]));
  await page.dispatchEvent("[data-testid=annot-threshold-lower]", "change");
  await page.fill("[data-testid=annot-threshold-upper]", String(p.range[1]));
  await page.dispatchEvent("[data-testid=annot-threshold-upper]", "change");
  await tool(page, "BucketFill");
  await click(page, p.bucket);
  result.bucket = await lastEdit(page);
  await shot(page, out("bucket.png"));
  await save(page, 2, "lung by bucket fill");
  lap("bucket");

  // 3. polygon fill of the tumour label with the lung label locked; undone and redone
  await page.check(`[data-testid=annot-lock][data-lock="${p.lung}"]`);
  await setLabel(page, p.tumour);
  await tool(page, "PolygonFill");
  const beforePolygon = await counts(page);
  await outline(page, p.polygon);
  result.polygon = { ...(await lastEdit(page)), before: beforePolygon, after: await counts(page) };
  await page.click("[data-testid=annot-undo]");
  await page.waitForTimeout(200);
  result.polygon.undone = await counts(page);
  await page.click("[data-testid=annot-redo]");
  await page.waitForTimeout(200);
  result.polygon.redone = await counts(page);
  result.polygonShot = await imageStats(page, await shot(page, out("polygon.png")));
  await save(page, 3, "tumour outlined");
  await page.uncheck(`[data-testid=annot-lock][data-lock="${p.lung}"]`);
  lap("polygon");

  // 4. brush dots of the lung label (islands), saved; then "remove islands" smaller than N voxels,
  // and "keep largest" (3D, 26-connected)
  await setLabel(page, p.lung);
  await tool(page, "Brush");
  for (const dot of p.dots) await dab(page, dot);
  result.dots = await counts(page);
  await save(page, 4, "stray dots");
  await page.fill("[data-testid=annot-island-size]", String(p.islandSize));
  await page.dispatchEvent("[data-testid=annot-island-size]", "change");
  await page.click("[data-testid=annot-remove-islands]");
  await page.waitForFunction(() => window.carinaAnnotation.lastEdit?.tool?.startsWith("RemoveIslands"));
  result.removeIslands = { ...(await lastEdit(page)), counts: await counts(page) };
  await save(page, 5, "small islands removed");
  await page.click("[data-testid=annot-keep-largest]");
  await page.waitForFunction(() => window.carinaAnnotation.lastEdit?.tool?.startsWith("KeepLargest"));
  result.islands = { ...(await lastEdit(page)), counts: await counts(page) };
  // undone and redone like a brush stroke
  await page.click("[data-testid=annot-undo]");
  await page.waitForTimeout(200);
  result.islands.undone = await counts(page);
  await page.click("[data-testid=annot-redo]");
  await page.waitForTimeout(200);
  result.islands.redone = await counts(page);
  await save(page, 6, "largest lung component kept");
  lap("islands");

  // 5. a tumour outline on another slice, then the slices between interpolated
  await setLabel(page, p.tumour);
  await page.evaluate(async (k) => {
    const viewer = window.carinaViewer;
    const cell = viewer.cells.find((c) => c.kind === "stack");
    await viewer.engine.getViewport(cell.id).setImageIdIndex(k);
  }, p.slice2);
  await page.waitForSelector(`[data-viewport=stack][data-index="${p.slice2}"]`);
  await tool(page, "PolygonFill");
  await outline(page, p.polygon2);
  result.polygon2 = await lastEdit(page);
  await save(page, 7, "tumour outlined on another slice");
  await page.click("[data-testid=annot-interpolate]");
  await page.waitForFunction(() => window.carinaAnnotation.lastEdit?.tool === "Interpolate");
  result.interpolate = await lastEdit(page);
  await page.evaluate(async (k) => {
    const viewer = window.carinaViewer;
    const cell = viewer.cells.find((c) => c.kind === "stack");
    await viewer.engine.getViewport(cell.id).setImageIdIndex(k);
  }, Math.round((result.slice + p.slice2) / 2));
  await page.waitForTimeout(300);
  await shot(page, out("interpolated.png"));
  await save(page, 8, "tumour interpolated");
  lap("interpolate");

  // 6. bucket fill in 3D (6-connected) of the lung label from the other lung, on the first slice
  await page.evaluate(async (k) => {
    const viewer = window.carinaViewer;
    const cell = viewer.cells.find((c) => c.kind === "stack");
    await viewer.engine.getViewport(cell.id).setImageIdIndex(k);
  }, result.slice);
  await page.waitForSelector(`[data-viewport=stack][data-index="${result.slice}"]`);
  await setLabel(page, p.lung);
  await page.check("[data-testid=annot-bucket-3d]");
  await tool(page, "BucketFill");
  await click(page, p.bucket);
  result.bucket3d = await lastEdit(page);
  await shot(page, out("bucket3d.png"));
  await save(page, 9, "lung by 3D bucket fill");
  lap("bucket3d");
  result.final = await counts(page);

  // 6b. grow-from-seeds of the tumour label: inside seeds on the tumour, outside seeds in the
  // lung around it, grown by the server (marker-controlled watershed)
  if (p.seeds) {
    await page.uncheck("[data-testid=annot-bucket-3d]");
    await setLabel(page, p.tumour);
    for (const [name, points] of [["SeedInside", p.seeds.inside], ["SeedOutside", p.seeds.outside]]) {
      await tool(page, name);
      for (const point of points) {
        const [x, y] = await toPage(page, point);
        await page.mouse.click(x, y);
        await page.waitForTimeout(600); // apart, or the viewer takes two clicks for a double click
      }
    }
    result.seedCount = await page.$eval("[data-testid=annot-seed-count]", (el) => ({ ...el.dataset }));
    await page.click("[data-testid=annot-grow-seeds]");
    await page.waitForFunction(() => window.carinaAnnotation.lastEdit?.tool === "GrowSeeds", null, { timeout: 60000 });
    result.seeds = await lastEdit(page);
    await shot(page, out("seeds.png"));
    await save(page, 10, "tumour grown from seeds");
    lap("seeds");
  }

  // 7. a label set with a value above 255: a new segmentation edited on 16-bit labelmap images,
  // a polygon of that label and a 2D bucket fill of the other, saved, then the page reloaded
  if (p.wide) {
    await page.uncheck("[data-testid=annot-bucket-3d]");
    await page.selectOption("[data-testid=annot-labelset]", p.wide.labelSet);
    await page.fill("[data-testid=annot-name]", "wide");
    await page.click("[data-testid=annot-create]");
    await waitPanel(page, `[data-status=ready][data-number="0"]:not([data-seg="${result.seg}"])`);
    const wide = { seg: await page.$eval(PANEL, (el) => el.dataset.seg) };
    await setLabel(page, p.wide.high);
    await tool(page, "PolygonFill");
    await outline(page, p.polygon);
    wide.polygon = await lastEdit(page);
    await save(page, 1, "a label above 255");
    await setLabel(page, p.lung);
    await tool(page, "BucketFill");
    await click(page, p.bucket);
    wide.bucket = await lastEdit(page);
    await save(page, 2, "and a bucket fill");
    wide.counts = await counts(page);
    await shot(page, out("wide.png"));
    await page.reload();
    await waitPanel(page, `[data-status=ready][data-seg="${wide.seg}"][data-number="2"]`, 60000);
    wide.reloaded = await counts(page);
    result.wide = wide;
    lap("wide");
  }
  result.history = await page.$$eval("[data-testid=annot-history] li", (items) => items.map((li) => li.textContent));
  return result;
});
