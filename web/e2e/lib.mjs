// Shared harness of the browser tests: Debian's chromium driven by playwright-core.
// Each test script prints one JSON object (its findings) as the last line of stdout, and exits
// non-zero when a step fails; tests/web/*.py start the server and check that JSON.
import { chromium } from "playwright-core";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

export const CHROMIUM = process.env.CARINA_CHROMIUM || "/usr/bin/chromium";

/** Command-line options every test takes: --url --user --password --project --out. */
export function options(extra = {}) {
  const { values } = parseArgs({
    options: {
      url: { type: "string" },
      user: { type: "string" },
      password: { type: "string" },
      project: { type: "string" },
      out: { type: "string", default: "web/e2e/artifacts" },
      params: { type: "string", default: "{}" },
      ...extra,
    },
    allowPositionals: true,
  });
  for (const key of ["url", "user", "password", "project"]) {
    if (!values[key]) throw new Error(`--${key} is required`);
  }
  mkdirSync(values.out, { recursive: true });
  return { ...values, params: JSON.parse(values.params) };
}

/** A headless chromium with software WebGL2 (SwiftShader) and a fresh profile. */
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), "carina-chromium-"));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: [
      "--no-sandbox",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
      "--use-gl=angle",
      "--use-angle=swiftshader",
      "--enable-unsafe-swiftshader",
    ],
  });
  const page = browser.pages()[0] ?? (await browser.newPage());
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  page.on("console", (message) => {
    // the sign-in check answers 401 before login: the browser logs that, the app expects it
    const text = message.text();
    if (message.type() === "error" && !/status of 401/.test(text)) errors.push(text);
  });
  return {
    page,
    errors,
    async close() {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Signs in through the login page and waits for the shell. */
export async function login(page, opts, navigate = true) {
  if (navigate) await page.goto(`${opts.url}/login`);
  await page.waitForSelector("[data-testid=login-form]");
  await page.fill("[data-testid=login-user]", opts.user);
  await page.fill("[data-testid=login-password]", opts.password);
  await page.click("[data-testid=login-submit]");
  await page.waitForSelector("[data-testid=user-name]");
}

/**
 * Runs a test body with a browser, prints its result as JSON and exits: 0 when it returned,
 * 1 when it threw (the error and the page's errors are printed too).
 */
export async function run(body) {
  const started = Date.now();
  const opts = options();
  const browser = await launch();
  let result = {};
  let code = 0;
  try {
    result = (await body(browser.page, opts)) ?? {};
  } catch (error) {
    code = 1;
    result = { error: String(error && error.stack ? error.stack : error) };
    await browser.page.screenshot({ path: join(opts.out, "failure.png") }).catch(() => undefined);
  }
  result.pageErrors = browser.errors;
  result.seconds = (Date.now() - started) / 1000;
  await browser.close();
  // exit once the result is written: a pipe takes 64 KiB at a time, and exiting earlier cuts it
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(code));
}

/**
 * Grey-level statistics of a screenshot (PNG buffer), decoded in the page: mean and standard
 * deviation over the whole image, and the mean of a (2r+1)^2 square at each of `points`
 * (pixel coordinates of the screenshot).
 */
export async function imageStats(page, png, points = [], radius = 3) {
  return page.evaluate(
    async ({ data, points, radius }) => {
      const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
      const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
      const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
      const context = canvas.getContext("2d");
      context.drawImage(bitmap, 0, 0);
      const { data: rgba, width, height } = context.getImageData(0, 0, bitmap.width, bitmap.height);
      const grey = (i) => (rgba[i] + rgba[i + 1] + rgba[i + 2]) / 3;
      let sum = 0;
      let squares = 0;
      let coloured = 0;
      const n = width * height;
      for (let i = 0; i < rgba.length; i += 4) {
        const g = grey(i);
        sum += g;
        squares += g * g;
        const r = rgba[i], gg = rgba[i + 1], b = rgba[i + 2];
        if (Math.max(r, gg, b) - Math.min(r, gg, b) > 60) coloured += 1;
      }
      const mean = sum / n;
      const rgb = points.map(([x, y]) => {
        const sum = [0, 0, 0];
        let count = 0;
        for (let dy = -radius; dy <= radius; dy++) {
          for (let dx = -radius; dx <= radius; dx++) {
            const px = Math.round(x) + dx;
            const py = Math.round(y) + dy;
            if (px < 0 || py < 0 || px >= width || py >= height) continue;
            const i = (py * width + px) * 4;
            sum[0] += rgba[i];
            sum[1] += rgba[i + 1];
            sum[2] += rgba[i + 2];
            count += 1;
          }
        }
        return count ? sum.map((v) => v / count) : null;
      });
      const at = points.map(([x, y]) => {
        let total = 0;
        let count = 0;
        for (let dy = -radius; dy <= radius; dy++) {
          for (let dx = -radius; dx <= radius; dx++) {
            const px = Math.round(x) + dx;
            const py = Math.round(y) + dy;
            if (px < 0 || py < 0 || px >= width || py >= height) continue;
            total += grey((py * width + px) * 4);
            count += 1;
          }
        }
        return count ? total / count : null;
      });
      return { width, height, mean, std: Math.sqrt(Math.max(0, squares / n - mean * mean)), coloured, at, rgb };
    },
    { data: png.toString("base64"), points, radius },
  );
}

/** The mean absolute grey difference of two same-sized screenshots. */
export async function imageDifference(page, a, b) {
  return page.evaluate(
    async ({ a, b }) => {
      const decode = async (data) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
        const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
        const context = canvas.getContext("2d");
        context.drawImage(bitmap, 0, 0);
        return context.getImageData(0, 0, bitmap.width, bitmap.height).data;
      };
      const [x, y] = [await decode(a), await decode(b)];
      if (x.length !== y.length) return null;
      let total = 0;
      for (let i = 0; i < x.length; i += 4) {
        total += Math.abs((x[i] + x[i + 1] + x[i + 2]) / 3 - (y[i] + y[i + 1] + y[i + 2]) / 3);
      }
      return total / (x.length / 4);
    },
    { a: a.toString("base64"), b: b.toString("base64") },
  );
}
