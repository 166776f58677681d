// The viewer's tools on a real CT: layouts 1x2 / 2x2 / MPR + 3D, angle and bidirectional
// measurements, zoom and pan, crosshairs and oblique MPR, the SEG overlay's colour / opacity /
// outline controls, and the server-rendered planes (?planes=server). Prints what it saw;
// tests/web/test_viewer_tools_e2e.py judges it against the data.
// --params: {"study": uid, "angle": [arm, vertex, arm], "bidirectional": [end, end],
//            "lung": [col, row], "jump": [col, row], "rotation": degrees}   (points: [col, row])
import { join } from "node:path";
import { imageDifference, imageStats, login, run } from "./lib.mjs";

const GRID_READY = "[data-testid=viewport-grid][data-status=ready]";

// the viewport's own canvas as PNG (Cornerstone copies each rendering into it)
async function shot(page, selector) {
  const data = await page.$eval(`${selector} canvas`, (canvas) => canvas.toDataURL("image/png"));
  return Buffer.from(data.split(",")[1], "base64");
}

async function redrawn(page, selector, action) {
  const renders = (await page.getAttribute(selector, "data-renders")) ?? "0";
  await action();
  await page.waitForFunction(
    ([sel, n]) => Number(document.querySelector(sel)?.dataset.renders ?? 0) > n,
    [selector, Number(renders)],
    { timeout: 60000 },
  );
  await page.waitForTimeout(150);
}

async function drag(page, from, to, button = "left") {
  await page.mouse.move(from[0], from[1]);
  await page.mouse.down({ button });
  await page.waitForTimeout(50);
  const steps = 8;
  for (let i = 1; i <= steps; i++) {
    await page.mouse.move(from[0] + ((to[0] - from[0]) * i) / steps, from[1] + ((to[1] - from[1]) * i) / steps);
    await page.waitForTimeout(30);
  }
  await page.waitForTimeout(100);
  await page.mouse.up({ button });
  await page.waitForTimeout(100);
}

// the viewports of the layout: kind, status and grey-level statistics of each one's canvas
async function views(page) {
  const kinds = await page.$$eval("[data-testid=viewport-grid] [data-viewport]", (els) => els.map((e) => e.dataset.viewport));
  const found = [];
  for (const kind of kinds) {
    const selector = `[data-viewport="${kind}"]`;
    const stats = await imageStats(page, await shot(page, selector));
    found.push({ kind, status: await page.getAttribute(selector, "data-status"), std: stats.std, mean: stats.mean });
  }
  return found;
}

const toPage = (page, point) => page.evaluate(([c, r]) => window.carinaViewer.imageToPage(c, r), point);
const camera = (page, kind) => page.evaluate((k) => window.carinaViewer.camera(k), kind);
const measured = (page, tool) =>
  page.$eval(`[data-testid=measurements] li[data-tool=${tool}]`, (li) => ({
    values: JSON.parse(li.dataset.values),
    points: JSON.parse(li.dataset.points),
  }));

await run(async (page, opts) => {
  const p = opts.params;
  const timings = {};
  let mark = Date.now();
  const lap = (name) => {
    timings[name] = (Date.now() - mark) / 1000;
    mark = Date.now();
  };
  await login(page, opts);
  const studyUrl = `${opts.url}/p/${opts.project}/study/${p.study}`;

  // 1x2: the stack and a MIP
  await page.goto(`${studyUrl}?layout=1x2`);
  await page.waitForSelector(GRID_READY, { timeout: 60000 });
  await page.waitForTimeout(300);
  const layouts = { "1x2": await views(page) };
  lap("1x2");

  // 2x2: the stack and the three MPR planes
  await page.selectOption("[data-testid=layout]", "2x2");
  await page.waitForSelector(GRID_READY, { timeout: 60000 });
  await page.waitForTimeout(300);
  layouts["2x2"] = await views(page);
  lap("2x2");

  // crosshairs: a click in the axial plane moves the sagittal and coronal planes through that point
  await page.click("button[data-tool=Crosshairs]");
  await page.waitForTimeout(300);
  const target = await page.evaluate(([c, r]) => window.carinaViewer.imageToWorld(c, r), p.jump);
  const crossBefore = { sagittal: await camera(page, "sagittal"), coronal: await camera(page, "coronal") };
  const at = await page.evaluate((world) => window.carinaViewer.worldToPage(world, "axial"), target);
  await redrawn(page, "[data-viewport=sagittal]", () => page.mouse.click(at[0], at[1]));
  await page.waitForTimeout(300);
  const crosshairs = {
    target,
    before: crossBefore,
    sagittal: await camera(page, "sagittal"),
    coronal: await camera(page, "coronal"),
    axial: await camera(page, "axial"),
  };
  lap("crosshairs");

  // oblique MPR: the sagittal and coronal planes turned about the axial normal
  const sagittalShot = await shot(page, "[data-viewport=sagittal]");
  await redrawn(page, "[data-viewport=sagittal]", () =>
    page.$eval(
      "[data-testid=mpr-rotation]",
      (input, degrees) => {
        input.value = String(degrees);
        input.dispatchEvent(new Event("change"));
      },
      p.rotation,
    ),
  );
  const oblique = {
    before: { sagittal: crosshairs.sagittal.viewPlaneNormal, coronal: crosshairs.coronal.viewPlaneNormal },
    sagittal: await camera(page, "sagittal"),
    coronal: await camera(page, "coronal"),
    axial: await camera(page, "axial"),
    difference: await imageDifference(page, await shot(page, "[data-viewport=sagittal]"), sagittalShot),
  };
  lap("oblique");

  // an angle (one stroke from an arm's end to the vertex, another to the other arm's end)
  await page.click("button[data-tool=Angle]");
  // (page positions taken just before use: the measurement list may resize the viewports)
  await drag(page, await toPage(page, p.angle[0]), await toPage(page, p.angle[1]));
  await drag(page, await toPage(page, p.angle[1]), await toPage(page, p.angle[2]));
  await page.waitForSelector("[data-testid=measurements] li[data-tool=Angle][data-angle]");
  const angle = await measured(page, "Angle");
  // a bidirectional: the long axis dragged, the short axis placed by the tool across it
  await page.click("button[data-tool=Bidirectional]");
  await drag(page, await toPage(page, p.bidirectional[0]), await toPage(page, p.bidirectional[1]));
  await page.waitForSelector("[data-testid=measurements] li[data-tool=Bidirectional][data-width]");
  const bidirectional = await measured(page, "Bidirectional");
  lap("measure");

  // the SEG overlay's controls: colour, opacity, outline and fill of the lung label
  const stackSelector = "[data-viewport=stack]";
  const lungAt = await toPage(page, p.lung);
  const box = await (await page.$(stackSelector)).boundingBox();
  const points = [[lungAt[0] - box.x, lungAt[1] - box.y]];
  const overlayState = async () => imageStats(page, await shot(page, stackSelector), points);
  const overlay = { before: await overlayState() };
  await redrawn(page, stackSelector, async () => {
    await page.click("[data-seg] [data-testid=seg-show]");
    await page.waitForSelector("[data-seg][data-status=shown]", { timeout: 60000 });
  });
  overlay.shown = await overlayState();
  const setInput = (selector, value, event = "input") =>
    redrawn(page, stackSelector, () =>
      page.$eval(
        selector,
        (input, [v, e]) => {
          if (input.type === "checkbox") input.checked = v;
          else input.value = v;
          input.dispatchEvent(new Event(e));
        },
        [value, event],
      ),
    );
  await setInput("[data-seg] [data-label='1'] [data-testid=seg-label-color]", "#ff0000");
  overlay.red = await overlayState();
  await setInput("[data-seg] [data-testid=seg-opacity]", "1");
  overlay.opaque = await overlayState();
  await setInput("[data-seg] [data-testid=seg-opacity]", "0");
  overlay.transparent = await overlayState();
  await setInput("[data-seg] [data-testid=seg-opacity]", "0.5");
  await setInput("[data-seg] [data-testid=seg-fill]", false, "change");
  overlay.outlineOnly = await overlayState();
  await setInput("[data-seg] [data-testid=seg-outline]", false, "change");
  overlay.neither = await overlayState();
  await page.screenshot({ path: join(opts.out, "tools-2x2.png") });
  lap("overlay");

  // zoom (primary drag with the Zoom tool) and pan (middle button)
  const stackBox = await (await page.$("[data-viewport=stack]")).boundingBox();
  // (from a corner, away from the measurements, which a drag would move)
  const centre = [stackBox.x + 40, stackBox.y + 60];
  const before = await camera(page, "stack");
  await page.click("button[data-tool=Zoom]");
  await drag(page, centre, [centre[0], centre[1] - 40]);
  const zoomed = await camera(page, "stack");
  await drag(page, centre, [centre[0] + 60, centre[1] + 40], "middle");
  const panned = await camera(page, "stack");
  await page.click("button[data-tool=WindowLevel]");
  const navigation = { before, zoomed, panned };
  lap("navigation");

  // MPR + 3D (in a smaller window: software 3D costs by the pixel)
  await page.setViewportSize({ width: 900, height: 560 });
  await page.selectOption("[data-testid=layout]", "mpr3d");
  await page.waitForSelector(GRID_READY, { timeout: 120000 });
  await page.waitForTimeout(500);
  layouts.mpr3d = await views(page);
  lap("mpr3d");

  // the server-rendered planes (forced with ?planes=server): images from /render
  await page.goto(`${studyUrl}?layout=2x2&planes=server`);
  await page.waitForSelector(GRID_READY, { timeout: 60000 });
  await page.waitForSelector("[data-viewport=sagittal][data-status=ready] img.server-plane", { timeout: 60000 });
  const server = { mode: await page.getAttribute("[data-testid=viewer]", "data-mode"), planes: {} };
  for (const kind of ["axial", "sagittal", "coronal"]) {
    const selector = `[data-viewport="${kind}"]`;
    await page.waitForSelector(`${selector}[data-status=ready]`, { timeout: 60000 });
    const image = await page.$eval(`${selector} img`, (img) => ({
      src: img.getAttribute("src"),
      width: img.naturalWidth,
      height: img.naturalHeight,
    }));
    const element = await page.$(`${selector} img`);
    const stats = await imageStats(page, await element.screenshot());
    server.planes[kind] = { ...image, std: stats.std, canvases: await page.$$eval(`${selector} canvas`, (c) => c.length) };
  }
  await page.screenshot({ path: join(opts.out, "tools-server.png") });
  lap("server");
  return { layouts, angle, bidirectional, navigation, crosshairs, oblique, overlay, server, timings };
});
