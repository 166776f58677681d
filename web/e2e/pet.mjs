// PET in the viewer: colour map and SUV readout on the PT stack, then the CT and the PET side by
// side: PET fused over the CT, and scrolling synchronized by patient position.
// Prints what it saw; tests/web/test_pet_e2e.py judges it.
// --params: {"study", "ct", "pet": uids, "centre", "far": [x, y, z] LPS mm, "scroll": notches}
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { imageDifference, imageStats, login, run } from "./lib.mjs";

// the viewport's own canvas as PNG (Cornerstone copies each rendering into it)
async function shot(page, selector, path) {
  const data = await page.$eval(`${selector} canvas`, (canvas) => canvas.toDataURL("image/png"));
  const png = Buffer.from(data.split(",")[1], "base64");
  writeFileSync(path, png);
  return png;
}

// runs `action` and waits until the viewport has drawn again
async function redrawn(page, selector, action) {
  const renders = (await page.getAttribute(selector, "data-renders")) ?? "0";
  await action();
  await page.waitForFunction(
    ([sel, n]) => Number(document.querySelector(sel)?.dataset.renders ?? 0) > n,
    [selector, Number(renders)],
    { timeout: 30000 },
  );
  await page.waitForTimeout(150);
}

// the SUV shown under the mouse at a page position
async function hover(page, selector, [x, y]) {
  await page.mouse.move(x - 3, y - 3);
  await page.mouse.move(x, y);
  await page.waitForFunction((sel) => document.querySelector(sel)?.dataset.suv !== undefined, selector, { timeout: 10000 });
  return Number(await page.getAttribute(selector, "data-suv"));
}

await run(async (page, opts) => {
  const p = opts.params;
  const out = (name) => join(opts.out, name);
  await login(page, opts);

  // the PET alone: colour map, SUV window, readout
  await page.goto(`${opts.url}/p/${opts.project}/study/${p.study}?series=${p.pet}`);
  const stack = "[data-viewport=stack]";
  await page.waitForSelector(`${stack}[data-status=ready][data-renders]`, { timeout: 60000 });
  await page.waitForTimeout(300);
  const box = await (await page.$(stack)).boundingBox();
  const stackPoint = (world) =>
    page.evaluate((w) => {
      const viewer = window.carinaViewer;
      const cell = viewer.cells.find((c) => c.kind === "stack");
      const [x, y] = viewer.engine.getViewport(cell.id).worldToCanvas(w);
      const b = cell.element.getBoundingClientRect();
      return [b.left + x, b.top + y];
    }, world);
  const centre = await stackPoint(p.centre);
  const far = await stackPoint(p.far);
  const petShot = await shot(page, stack, out("pet-stack.png"));
  const stats = await imageStats(page, petShot, [
    [centre[0] - box.x, centre[1] - box.y],
    [far[0] - box.x, far[1] - box.y],
  ]);
  const pet = {
    index: Number(await page.getAttribute(stack, "data-index")),
    stats,
    suv: await hover(page, stack, centre),
    readout: await page.textContent("[data-testid=readout]"),
  };
  await page.mouse.move(far[0] - 5, far[1]);
  pet.backgroundSuv = await hover(page, stack, far);
  await page.screenshot({ path: out("pet-page.png") }).catch(() => undefined);

  // the CT and the PET side by side
  await page.selectOption("[data-testid=compare-series]", p.ct);
  await page.waitForSelector("[data-testid=sync-view][data-status=ready]", { timeout: 90000 });
  const left = "[data-viewport=left]";
  const right = "[data-viewport=right]";
  await page.waitForSelector(`${left}[data-renders]`);
  await page.waitForTimeout(300);
  const leftBox = await (await page.$(left)).boundingBox();
  const leftPoints = async () => {
    const points = await page.evaluate(
      ([a, b]) => [window.carinaSync.worldToPage("left", a), window.carinaSync.worldToPage("left", b)],
      [p.centre, p.far],
    );
    return points.map(([x, y]) => [x - leftBox.x, y - leftBox.y]);
  };
  const beforeShot = await shot(page, left, out("fusion-off.png"));
  const before = await imageStats(page, beforeShot, await leftPoints());
  await redrawn(page, left, () => page.check("[data-testid=fuse]"));
  const afterShot = await shot(page, left, out("fusion-on.png"));
  const after = await imageStats(page, afterShot, await leftPoints());
  const [cx, cy] = await page.evaluate((w) => window.carinaSync.worldToPage("left", w), p.centre);
  const fusedSuv = await hover(page, left, [cx, cy]);
  // the opacity slider: the sphere's colour at a few opacities
  const opacities = {};
  for (const value of ["0.3", "0.95"]) {
    await redrawn(page, left, () =>
      page.$eval(
        "[data-testid=fuse-opacity]",
        (input, v) => {
          input.value = v;
          input.dispatchEvent(new Event("input"));
        },
        value,
      ),
    );
    const png = await shot(page, left, out(`fusion-opacity-${value}.png`));
    opacities[value] = (await imageStats(page, png, await leftPoints())).rgb;
  }
  // fusion in a coronal plane through the sphere
  await page.$eval("[data-testid=fuse-opacity]", (input) => {
    input.value = "1";
    input.dispatchEvent(new Event("input"));
  });
  await redrawn(page, left, () => page.selectOption("[data-testid=sync-orientation]", "coronal"));
  await redrawn(page, left, () => page.evaluate((w) => window.carinaSync.jumpTo(w), p.centre));
  const coronalShot = await shot(page, left, out("fusion-coronal.png"));
  const coronal = await imageStats(page, coronalShot, await leftPoints());
  // each side's volume came in one response
  const prefetched = [await page.getAttribute(left, "data-frames-prefetched"), await page.getAttribute(right, "data-frames-prefetched")].map(Number);
  const fusion = { before, after, fusedSuv, opacities, coronal, prefetched };
  await shot(page, right, out("sync-pet.png"));
  await page.screenshot({ path: out("fusion-page.png") }).catch(() => undefined);

  await redrawn(page, left, () => page.selectOption("[data-testid=sync-orientation]", "axial"));
  await redrawn(page, left, () => page.evaluate((w) => window.carinaSync.jumpTo(w), p.centre));

  // synchronized scrolling: N notches on the CT, the PET follows
  const state = () => page.evaluate(() => ({ left: window.carinaSync.sliceState("left"), right: window.carinaSync.sliceState("right") }));
  const sync = { before: await state() };
  await page.mouse.move(leftBox.x + leftBox.width / 2, leftBox.y + leftBox.height / 2);
  for (let i = 0; i < p.scroll; i++) {
    await redrawn(page, left, () => page.mouse.wheel(0, 120));
  }
  await page.waitForTimeout(300);
  sync.after = await state();
  await page.screenshot({ path: out("sync-page.png") }).catch(() => undefined);
  // unlinked: the CT scrolls alone
  await page.uncheck("[data-testid=sync-scroll]");
  await page.mouse.move(leftBox.x + leftBox.width / 2, leftBox.y + leftBox.height / 2);
  for (let i = 0; i < 2; i++) {
    await redrawn(page, left, () => page.mouse.wheel(0, 120));
  }
  await page.waitForTimeout(300);
  sync.unlinked = await state();
  await page.screenshot({ path: out("unlinked-page.png") }).catch(() => undefined);

  // linked zoom: a right-button drag zooms the CT, and the PET with it
  await page.check("[data-testid=sync-zoom]");
  const zoom = { before: await state() };
  const mid = [leftBox.x + leftBox.width / 2, leftBox.y + leftBox.height / 2];
  await redrawn(page, right, async () => {
    await page.mouse.move(mid[0], mid[1]);
    await page.mouse.down({ button: "right" });
    for (let i = 1; i <= 8; i++) {
      await page.mouse.move(mid[0], mid[1] + 10 * i);
      await page.waitForTimeout(30);
    }
    await page.mouse.up({ button: "right" });
  });
  zoom.after = await state();
  sync.zoom = zoom;
  return { pet, fusion, sync };
});
