// Geometric annotations on a real CT: a line and a box drawn with the Shapes panel's tools on the
// middle slice are posted to the server; the page is reloaded and the stored shapes are drawn
// again; the series' SR is downloaded through the panel's "Export SR" link. Prints what it saw
// (the image pixels aimed at, the figures the viewer displayed, the downloaded file);
// tests/web/test_shapes_e2e.py judges it against the server and the series' geometry.
// --params: {"study", "series", "line": [[col, row], [col, row]], "box": [[col, row], [col, row]],
//            "point": [col, row], "angle": [arm, vertex, arm], "ellipse": [corner, corner],
//            "polygon": [[col, row], ...]} (the last four are drawn too when given)
import { join } from "node:path";
import { login, run } from "./lib.mjs";

const PANEL = "[data-testid=shapes]";

// Cornerstone's image coordinates start at the top left corner of the top left pixel: the centre
// of pixel (column, row) is at (column + 0.5, row + 0.5)
// (the page is scrolled back to its top first: the panel's buttons are below the viewport's top)
const centre = (page, [c, r]) =>
  page.evaluate(([x, y]) => {
    window.scrollTo(0, 0);
    return window.carinaViewer.imageToPage(x, y);
  }, [c + 0.5, r + 0.5]);

async function drag(page, from, to) {
  const a = await centre(page, from);
  const b = await centre(page, to);
  await page.mouse.move(a[0], a[1]);
  await page.mouse.down();
  await page.waitForTimeout(50);
  const steps = 8;
  for (let i = 1; i <= steps; i++) {
    await page.mouse.move(a[0] + ((b[0] - a[0]) * i) / steps, a[1] + ((b[1] - a[1]) * i) / steps);
    await page.waitForTimeout(30);
  }
  await page.mouse.up();
  return [a, b];
}

async function click(page, at) {
  const a = await centre(page, at);
  await page.mouse.move(a[0], a[1]);
  await page.mouse.down();
  await page.waitForTimeout(30);
  await page.mouse.up();
  return a;
}

/** A stroke through `points` with the button held (the freehand tool closes it on release). */
async function stroke(page, points) {
  const pages = [];
  for (const point of points) pages.push(await centre(page, point));
  await page.mouse.move(pages[0][0], pages[0][1]);
  await page.mouse.down();
  for (let k = 1; k < pages.length; k++) {
    const [a, b] = [pages[k - 1], pages[k]];
    for (let i = 1; i <= 6; i++) {
      await page.mouse.move(a[0] + ((b[0] - a[0]) * i) / 6, a[1] + ((b[1] - a[1]) * i) / 6);
      await page.waitForTimeout(15);
    }
  }
  await page.mouse.up();
  return pages;
}

async function waitPanel(page, attributes, timeout = 30000) {
  try {
    await page.waitForSelector(`${PANEL}${attributes}`, { timeout });
  } catch (error) {
    const state = await page.$eval(PANEL, (el) => ({ ...el.dataset, text: el.querySelector("[data-testid=shapes-status]")?.textContent }));
    throw new Error(`shapes panel not ${attributes}: ${JSON.stringify(state)} (${error})`);
  }
}

// the panel's shapes; a long outline is summed up (its point count, first points and the sum of
// its coordinates) to keep the printed result short
const entries = (page) =>
  page.evaluate(() =>
    window.carinaShapes.entries().map((e) => ({
      ...e,
      n: e.points.length,
      sum: e.points.reduce((s, p) => [s[0] + p[0], s[1] + p[1], s[2] + p[2]], [0, 0, 0]),
      points: e.points.length > 8 ? e.points.slice(0, 8) : e.points,
    })),
  );
const listed = (page) =>
  page.$$eval("[data-testid=shapes-list] li", (items) =>
    items.map((li) => ({ ...li.dataset, value: li.querySelector("[data-testid=shape-value]")?.textContent })),
  );
// the text Cornerstone draws next to the annotations on the stack view
const overlayTexts = (page) => page.$$eval("[data-viewport=stack] svg text", (items) => items.map((t) => t.textContent).filter(Boolean));

await run(async (page, opts) => {
  const p = opts.params;
  const url = `${opts.url}/p/${opts.project}/study/${p.study}?series=${p.series}`;
  await login(page, opts);
  await page.goto(url);
  await page.waitForSelector("[data-viewport=stack][data-status=ready]", { timeout: 60000 });
  await waitPanel(page, "[data-status=ready][data-loaded='0']");
  const slice = Number(await page.$eval("[data-viewport=stack]", (el) => el.dataset.index));

  await page.click("[data-shape-tool=line]");
  await page.fill("[data-testid=shapes-label]", "nodule axis");
  const linePage = await drag(page, p.line[0], p.line[1]);
  await waitPanel(page, "[data-status=saved][data-count='1']");
  await page.click("[data-shape-tool=box]");
  await page.fill("[data-testid=shapes-label]", "nodule box");
  const boxPage = await drag(page, p.box[0], p.box[1]);
  await waitPanel(page, "[data-status=saved][data-count='2']");
  let count = 2;
  const more = async (kind, label, draw) => {
    await page.click(`[data-shape-tool=${kind}]`);
    await page.fill("[data-testid=shapes-label]", label);
    await draw();
    count += 1;
    await waitPanel(page, `[data-status=saved][data-count='${count}']`);
  };
  if (p.point) await more("point", "spinal canal", () => click(page, p.point));
  if (p.angle) {
    await more("angle", "lung angle", async () => {
      // Cornerstone's angle: one stroke from an arm's end to the vertex, another to the other arm
      await drag(page, p.angle[0], p.angle[1]);
      await page.waitForTimeout(100);
      await drag(page, p.angle[1], p.angle[2]);
    });
  }
  if (p.ellipse) await more("ellipse", "chest wall", () => drag(page, p.ellipse[0], p.ellipse[1]));
  if (p.polygon) await more("polygon", "lesion outline", () => stroke(page, p.polygon));
  await page.waitForTimeout(300);
  const drawn = { entries: await entries(page), listed: await listed(page), overlay: await overlayTexts(page) };
  await page.screenshot({ path: join(opts.out, "shapes-drawn.png") });

  // reload: the stored shapes come back from the server and are drawn again
  await page.reload();
  await page.waitForSelector("[data-viewport=stack][data-status=ready]", { timeout: 60000 });
  await waitPanel(page, `[data-status=ready][data-loaded='${count}']`);
  await page.waitForTimeout(800);
  const reloaded = {
    entries: await entries(page),
    listed: await listed(page),
    overlay: await overlayTexts(page),
    annotations: await page.evaluate(() => window.carinaShapes.annotationCount()),
  };
  await page.screenshot({ path: join(opts.out, "shapes-reloaded.png") });

  // the SR through the panel's link
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("[data-testid=shapes-export-sr]")]);
  const srPath = join(opts.out, "shapes-export.dcm");
  await download.saveAs(srPath);
  return { slice, linePage, boxPage, drawn, reloaded, srPath, srName: download.suggestedFilename() };
});
