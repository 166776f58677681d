// Viewer timings in a real browser (Debian chromium, software WebGL) against a running server:
// time to the first image of a series (stack, from a click in the worklist) and to MPR ready (2x2: stack + 3 planes), where
// MPR is the browser's (volume loaded) or the server's (rendered planes) as the viewer decides.
// Usage: node bench/viewer.mjs --url U --user N --password P --project P --params
//        '{"study": uid, "series": uid, "runs": 3}'   (prints one JSON line)
import { launch, login, options } from "../web/e2e/lib.mjs";

const opts = options();
const { study, series, runs = 3 } = opts.params;
const browser = await launch();
const page = browser.page;
const result = { firstImage: [], observed: [], phases: [], mprReady: [], mprInPage: [], mode: null, errors: browser.errors };
try {
  await login(page, opts);
  for (let run = 0; run < runs; run++) {
    // from the worklist (the app loaded, as a user sees it) to the first image of the study
    await page.goto(`${opts.url}/p/${opts.project}`);
    await page.waitForSelector(`tr[data-study="${study}"] a`);
    // the click's time as the page sees it: the first image is timed inside the page, from the
    // click to the stack viewport's first drawing of an image (the viewer's carina:first-image
    // mark), so the automation's own polling is not counted
    await page.evaluate(() => {
      document.addEventListener("click", () => performance.mark("bench:click"), { capture: true, once: true });
    });
    const start = Date.now();
    await page.click(`tr[data-study="${study}"] a`);
    await page.waitForFunction(
      () => document.querySelector("[data-viewport=stack]")?.dataset.firstImage,
      null,
      { timeout: 300000, polling: 20 },
    );
    result.observed.push((Date.now() - start) / 1000);
    const phases = await page.evaluate(() => {
      const marks = performance.getEntriesByType("mark");
      const click = marks.filter((m) => m.name === "bench:click").at(-1).startTime;
      const out = {};
      for (const m of marks) if (m.name.startsWith("carina:") && m.startTime >= click && !(m.name in out)) out[m.name.slice(7)] = Math.round(m.startTime - click);
      performance.clearMarks();
      return out;
    });
    result.phases.push(phases);
    result.firstImage.push(phases["first-image"] / 1000);
    result.mode = await page.getAttribute("[data-testid=viewer]", "data-mode");
    const mpr = Date.now();
    await page.selectOption("[data-testid=layout]", "2x2");
    await page.waitForFunction(
      () =>
        ["axial", "sagittal", "coronal"].every(
          (kind) => document.querySelector(`[data-viewport="${kind}"]`)?.dataset.status === "ready",
        ),
      null,
      { timeout: 600000, polling: 50 },
    );
    result.mprReady.push((Date.now() - mpr) / 1000);
    result.timings = JSON.parse((await page.getAttribute("[data-testid=viewer]", "data-timings")) ?? "{}");
    result.prefetched = await page.getAttribute("[data-testid=viewer]", "data-frames-prefetched");
    // the viewer's own lap from the layout change to the three planes drawn (server planes: the
    // observed time only)
    if (result.timings.mpr !== undefined) result.mprInPage.push(result.timings.mpr / 1000);
  }
} catch (error) {
  result.error = String(error);
}
await browser.close();
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(result.error ? 1 : 0);
