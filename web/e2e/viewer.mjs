// The viewer on a real CT: worklist -> study -> stack, window presets, MPR, MIP slab, 3D,
// a length and an ROI measurement. Prints what it saw; tests/web/test_viewer_e2e.py judges it.
// --params: {"study": uid, "lung": [col, row], "mediastinum": [col, row],
//            "length": [[col, row], [col, row]], "roi": [[col, row], [col, row]]}
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { imageDifference, imageStats, login, run } from "./lib.mjs";

// The viewport's own canvas as PNG: Cornerstone copies each rendering into a 2D canvas, which
// reads back without waiting for the page's compositor (slow with software 3D under load).
async function shot(page, selector, path) {
  const data = await page.$eval(`${selector} canvas`, (canvas) => canvas.toDataURL("image/png"));
  const png = Buffer.from(data.split(",")[1], "base64");
  writeFileSync(path, png);
  return png;
}

// a screenshot of the page for the record; slow frames do not fail the test
async function pageShot(page, path) {
  await page.screenshot({ path, timeout: 90000 }).catch((error) => console.error(`screenshot ${path}: ${error}`));
}

// runs `action` and waits until the viewport has drawn again (software 3D takes its time)
async function redrawn(page, selector, action) {
  const renders = (await page.getAttribute(selector, "data-renders")) ?? "0";
  await action();
  await page.waitForFunction(
    ([sel, n]) => Number(document.querySelector(sel)?.dataset.renders ?? 0) > n,
    [selector, Number(renders)],
    { timeout: 90000 },
  );
  await page.waitForTimeout(200);
}

// a slow drag: the tools update their handles on mouse moves, one per animation frame
async function drag(page, from, to) {
  await page.mouse.move(from[0], from[1]);
  await page.mouse.down();
  await page.waitForTimeout(50);
  const steps = 10;
  for (let i = 1; i <= steps; i++) {
    await page.mouse.move(from[0] + ((to[0] - from[0]) * i) / steps, from[1] + ((to[1] - from[1]) * i) / steps);
    await page.waitForTimeout(30);
  }
  await page.waitForTimeout(150);
  await page.mouse.up();
  await page.waitForTimeout(150);
}

await run(async (page, opts) => {
  const p = opts.params;
  const out = (name) => join(opts.out, name);
  const timings = {};
  const t0 = Date.now();
  let mark = Date.now();
  const lap = (name) => {
    timings[name] = (Date.now() - mark) / 1000;
    mark = Date.now();
  };
  await login(page, opts);

  // worklist: the study is listed, searchable by patient name
  await page.goto(`${opts.url}/p/${opts.project}`);
  await page.waitForSelector(`tr[data-study="${p.study}"]`);
  const patient = await page.textContent(`tr[data-study="${p.study}"] td[data-col=name]`);
  await page.fill("[data-testid=filter-name]", "nobody-has-this-name");
  await page.click("[data-testid=search]");
  await page.waitForFunction(() => document.querySelectorAll("[data-testid=worklist] tbody tr").length === 0);
  await page.fill("[data-testid=filter-name]", patient.slice(0, 6));
  await page.click("[data-testid=search]");
  await page.waitForSelector(`tr[data-study="${p.study}"]`);
  await page.screenshot({ path: out("worklist.png") });
  lap("worklist");

  // study view: thumbnails and the stack viewport
  const opened = Date.now();
  await page.click(`tr[data-study="${p.study}"] a`);
  await page.waitForSelector("[data-viewport=stack][data-status=ready]", { timeout: 60000 });
  await page.waitForTimeout(300);
  timings.firstImage = (Date.now() - opened) / 1000;
  const thumbnails = await page.$$eval(".series-card img", (imgs) => imgs.map((i) => i.complete && i.naturalWidth > 0));
  const stackSelector = "[data-viewport=stack]";
  const stackIndex = Number(await page.getAttribute(stackSelector, "data-index"));

  const box = await (await page.$(stackSelector)).boundingBox();
  const toShot = async (column, row) => {
    const [x, y] = await page.evaluate(([c, r]) => window.carinaViewer.imageToPage(c, r), [column, row]);
    return [x - box.x, y - box.y];
  };
  const points = [await toShot(...p.lung), await toShot(...p.mediastinum)];
  const defaultShot = await shot(page, stackSelector, out("stack-default.png"));
  await redrawn(page, stackSelector, () => page.selectOption("[data-testid=window-preset]", "lung"));
  const lungShot = await shot(page, stackSelector, out("stack-lung.png"));
  const lungWindow = await imageStats(page, lungShot, points);
  await redrawn(page, stackSelector, () => page.selectOption("[data-testid=window-preset]", "bone"));
  const boneShot = await shot(page, stackSelector, out("stack-bone.png"));
  const stack = {
    index: stackIndex,
    default: await imageStats(page, defaultShot),
    lung: lungWindow,
    bone: await imageStats(page, boneShot, points),
    lungVsDefault: await imageDifference(page, lungShot, defaultShot),
    boneVsLung: await imageDifference(page, boneShot, lungShot),
  };
  await page.selectOption("[data-testid=window-preset]", "lung");
  lap("stack");

  // measurements on the stack: a length between two known pixels, an elliptical ROI
  await page.click("button[data-tool=Length]");
  const a = await page.evaluate(([c, r]) => window.carinaViewer.imageToPage(c, r), p.length[0]);
  const b = await page.evaluate(([c, r]) => window.carinaViewer.imageToPage(c, r), p.length[1]);
  await drag(page, a, b);
  await page.waitForSelector("[data-testid=measurements] li[data-tool=Length][data-length]");
  const length = Number(await page.getAttribute("[data-testid=measurements] li[data-tool=Length]", "data-length"));
  await page.click("button[data-tool=EllipticalROI]");
  const r0 = await page.evaluate(([c, r]) => window.carinaViewer.imageToPage(c, r), p.roi[0]);
  const r1 = await page.evaluate(([c, r]) => window.carinaViewer.imageToPage(c, r), p.roi[1]);
  await drag(page, r0, r1);
  await page.waitForSelector("[data-testid=measurements] li[data-tool=EllipticalROI][data-mean]");
  const roi = await page.$eval("[data-testid=measurements] li[data-tool=EllipticalROI]", (li) => ({
    mean: Number(li.dataset.mean),
    stdDev: Number(li.dataset.stdDev ?? li.dataset.stddev),
    area: Number(li.dataset.area),
    text: li.textContent,
  }));
  await pageShot(page, out("measure.png"));
  await page.click("button[data-tool=WindowLevel]");

  // the segmentation overlay: coloured pixels where the mask is, gone when its label is hidden
  const before = await imageStats(page, await shot(page, stackSelector, out("seg-before.png")), points);
  await redrawn(page, stackSelector, async () => {
    await page.click("[data-seg] [data-testid=seg-show]");
    await page.waitForSelector("[data-seg][data-status=shown]", { timeout: 60000 });
  });
  const shown = await imageStats(page, await shot(page, stackSelector, out("seg-shown.png")), points);
  await redrawn(page, stackSelector, () => page.click("[data-seg] [data-testid=seg-label-visible]"));
  const hidden = await imageStats(page, await shot(page, stackSelector, out("seg-hidden.png")), points);
  await page.click("[data-seg] [data-testid=seg-label-visible]");
  await page.waitForTimeout(300);
  const overlay = {
    before,
    shown,
    hidden,
    voxels: Number(await page.getAttribute("[data-seg]", "data-voxels")),
  };
  lap("overlay");

  // the mouse wheel scrolls the stack, one slice a notch
  const centre = [box.x + box.width / 2, box.y + box.height / 2];
  await page.mouse.move(centre[0], centre[1]);
  for (let i = 0; i < 3; i++) {
    await redrawn(page, stackSelector, () => page.mouse.wheel(0, 120));
  }
  const scrolled = Number(await page.getAttribute(stackSelector, "data-index"));
  lap("measure");

  // MPR + 3D: three planes and a volume rendering
  const mprStarted = Date.now();
  await page.selectOption("[data-testid=layout]", "mpr3d");
  await page.waitForSelector("[data-testid=viewport-grid][data-status=ready]", { timeout: 120000 });
  timings.mprAnd3d = (Date.now() - mprStarted) / 1000;
  // the volume's voxels (the whole series fetched in one response) against the DICOM files
  const voxels = {
    prefetched: Number(await page.getAttribute("[data-testid=viewer]", "data-frames-prefetched")),
    values: await page.evaluate((points) => window.carinaViewer.volumeValues(points), p.voxels),
  };
  await page.waitForTimeout(1500);
  const views = {};
  const shots = {};
  for (const kind of ["axial", "sagittal", "coronal", "3d"]) {
    shots[kind] = await shot(page, `[data-viewport="${kind}"]`, out(`mpr-${kind}.png`));
    views[kind] = await imageStats(page, shots[kind]);
  }
  lap("mprShots");

  // a MIP slab on the MPR planes
  await redrawn(page, "[data-viewport=axial]", async () => {
    await page.selectOption("[data-testid=slab-mode]", "mip");
    await page.$eval("[data-testid=slab-thickness]", (input) => {
      input.value = "40";
      input.dispatchEvent(new Event("input"));
    });
  });
  const mipShot = await shot(page, "[data-viewport=axial]", out("mip-axial.png"));
  const mip = {
    stats: await imageStats(page, mipShot),
    vsThin: await imageDifference(page, mipShot, shots.axial),
    slab: await page.getAttribute("[data-testid=viewer]", "data-slab"),
  };
  lap("mip");

  // the lung label's surface mesh in the 3D viewport
  await redrawn(page, "[data-viewport=\"3d\"]", async () => {
    await page.click("[data-seg] [data-label='1'] [data-testid=seg-label-mesh]");
    await page.waitForSelector("[data-seg] [data-label='1'][data-mesh^=shown]", { timeout: 60000 });
  });
  const meshShot = await shot(page, "[data-viewport=\"3d\"]", out("3d-mesh.png"));
  const mesh = {
    state: await page.getAttribute("[data-seg] [data-label='1']", "data-mesh"),
    count: await page.getAttribute("[data-viewport=\"3d\"]", "data-meshes"),
    difference: await imageDifference(page, meshShot, shots["3d"]),
  };
  await redrawn(page, "[data-viewport=\"3d\"]", () =>
    page.click("[data-seg] [data-label='1'] [data-testid=seg-label-mesh]"),
  );
  lap("mesh");

  // another 3D preset changes the rendering
  await redrawn(page, "[data-viewport=\"3d\"]", () => page.selectOption("[data-testid=volume-preset]", "lung"));
  const lung3d = await shot(page, "[data-viewport=\"3d\"]", out("3d-lung.png"));
  const volume = { bone: views["3d"], lung: await imageStats(page, lung3d), presetDifference: await imageDifference(page, lung3d, shots["3d"]) };

  lap("volume");
  await pageShot(page, out("mpr3d.png"));

  // auto-rotation of the 3D view: the camera turns about its view-up axis while switched on
  const camera3d = () => page.evaluate(() => window.carinaViewer.camera("3d"));
  const spin = { before: await camera3d() };
  await page.check("[data-testid=auto-rotate]");
  const spinStarted = Date.now();
  // software rendering draws a 3D frame in seconds: wait for a 10 degree turn
  await page.waitForFunction(
    (n0) => {
      const n = window.carinaViewer.camera("3d").viewPlaneNormal;
      return n0[0] * n[0] + n0[1] * n[1] + n0[2] * n[2] < Math.cos((10 * Math.PI) / 180);
    },
    spin.before.viewPlaneNormal,
    { timeout: 60000, polling: 100 },
  );
  spin.seconds = (Date.now() - spinStarted) / 1000;
  spin.during = await camera3d();
  await page.uncheck("[data-testid=auto-rotate]");
  await page.waitForTimeout(300);
  spin.stopped = await camera3d();
  await page.waitForTimeout(700);
  spin.later = await camera3d();
  await shot(page, "[data-viewport=\"3d\"]", out("3d-rotated.png"));
  lap("spin");
  return { patient, thumbnails, stack, overlay, mesh, scrolled, length, roi, views, voxels, mip, volume, spin, timings, total: (Date.now() - t0) / 1000 };
});
