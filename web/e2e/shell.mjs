// The shell: sign in, see the project in the switcher, open the upload view.
import { join } from "node:path";
import { login, run } from "./lib.mjs";

await run(async (page, opts) => {
  await page.goto(`${opts.url}/p/${opts.project}`);
  await page.waitForSelector("[data-testid=login-form]");
  const redirected = new URL(page.url()).pathname;
  await login(page, opts, false);
  await page.waitForURL(`**/p/${opts.project}`);
  const landed = new URL(page.url()).pathname;
  const projects = await page.$$eval("[data-testid=project-switcher] option", (o) => o.map((x) => x.value));
  await page.click("nav a:text('Upload')");
  await page.waitForSelector("[data-testid^=upload]");
  await page.screenshot({ path: join(opts.out, "shell.png") });
  // the jobs view follows the server's job event stream
  await page.click("nav a:text('Jobs')");
  await page.waitForFunction(() => document.querySelector("[data-testid=jobs-live]")?.textContent === "live");
  const jobsLive = await page.textContent("[data-testid=jobs-live]");
  return { redirected, landed, projects, jobsLive, user: await page.textContent("[data-testid=user-name]") };
});
