// Task queue and review on a real CT, one browser, four people signing in and out: the manager
// creates a task for annotator A; A finds it in "My tasks", opens it, paints with the label
// editor's brush, saves and submits, and is offered no review of their own work; the reviewer
// returns it with a comment; A reads the comment and submits again; the reviewer accepts; the
// manager's dashboard counts it. After each step the task's state is read from the server (as the
// person signed in). Prints what it saw; tests/web/test_tasks_e2e.py judges it.
// --params: {"study", "series", "labelSet", "manager": [name, password], "a": [...],
//            "reviewer": [...], "title", "instructions", "milestone", "due", "comment",
//            "paint": [[col, row], [col, row]]}
import { join } from "node:path";
import { login, run } from "./lib.mjs";

const PANEL = "[data-testid=annotate]";

async function signInAs(page, opts, [user, password]) {
  if (await page.$("[data-testid=logout]")) {
    await page.click("[data-testid=logout]");
    await page.waitForSelector("[data-testid=login-form]");
    await login(page, { ...opts, user, password }, false);
  } else {
    await login(page, { ...opts, user, password });
  }
}

/** The state of an annotator's part, read from the server by the signed-in user. */
async function serverPart(page, opts, task, annotator) {
  return page.evaluate(
    async ({ project, task, annotator }) => {
      const response = await fetch(`/api/projects/${project}/tasks/${task}`, { credentials: "same-origin" });
      const body = await response.json();
      const part = body.assignments.find((a) => a.annotator === annotator);
      return { status: response.status, state: part?.state, comment: part?.review_comment, reviewer: part?.reviewer };
    },
    { project: opts.project, task, annotator },
  );
}

async function paint(page, from, to) {
  const edits = await page.evaluate(() => window.carinaAnnotation.edits);
  const a = await page.evaluate(([c, r]) => window.carinaViewer.imageToPage(c, r), from);
  const b = await page.evaluate(([c, r]) => window.carinaViewer.imageToPage(c, r), to);
  await page.mouse.move(a[0], a[1]);
  await page.mouse.down();
  await page.waitForTimeout(50);
  const steps = 10;
  for (let i = 1; i <= steps; i++) {
    await page.mouse.move(a[0] + ((b[0] - a[0]) * i) / steps, a[1] + ((b[1] - a[1]) * i) / steps);
    await page.waitForTimeout(40);
  }
  await page.mouse.up();
  await page.waitForFunction((before) => window.carinaAnnotation.edits > before, edits, { timeout: 10000 });
  await page.waitForTimeout(300);
}

const rowOf = (page, selector) =>
  page.$eval(selector, (row) => ({ ...row.dataset, text: row.textContent, buttons: [...row.querySelectorAll("button")].map((b) => b.dataset.testid) }));

await run(async (page, opts) => {
  const p = opts.params;
  const out = (name) => join(opts.out, `tasks-${name}`);
  const base = `${opts.url}/p/${opts.project}`;
  const [annotator] = p.a;
  const states = {};
  const timings = {};
  let mark = Date.now();
  const lap = (name) => {
    timings[name] = (Date.now() - mark) / 1000;
    mark = Date.now();
  };

  // the manager creates the task for A
  await signInAs(page, opts, p.manager);
  await page.goto(`${base}/tasks/new`);
  await page.waitForSelector("[data-testid=task-series] option", { state: "attached" });
  await page.selectOption("[data-testid=task-study]", p.study);
  await page.selectOption("[data-testid=task-series]", p.series);
  await page.selectOption("[data-testid=task-labelset]", p.labelSet);
  await page.fill("[data-testid=task-title]", p.title);
  await page.fill("[data-testid=task-instructions]", p.instructions);
  await page.fill("[data-testid=task-milestone]", p.milestone);
  await page.fill("[data-testid=task-due]", p.due);
  const assignees = await page.$$eval("[data-testid=task-assignee]", (boxes) => boxes.map((b) => b.value));
  await page.check(`[data-testid=task-assignee][value="${annotator}"]`);
  await page.click("[data-testid=task-create]");
  await page.waitForSelector("[data-testid=task-message][data-task]");
  const task = Number(await page.$eval("[data-testid=task-message]", (el) => el.dataset.task));
  await page.screenshot({ path: out("created.png") });
  states.created = await serverPart(page, opts, task, annotator);
  lap("create");

  // A: the queue, the task opened in the viewer on A's segmentation, painted, saved, submitted
  await signInAs(page, opts, p.a);
  await page.goto(`${base}/tasks`);
  await page.waitForSelector(`[data-testid=task-row][data-task="${task}"]`);
  const queued = await rowOf(page, `[data-testid=task-row][data-task="${task}"]`);
  queued.instructions = await page.$eval(`[data-testid=task-row][data-task="${task}"] [data-testid=task-instructions]`, (el) => el.textContent);
  queued.due = await page.$eval(`[data-testid=task-row][data-task="${task}"] [data-testid=task-due]`, (el) => el.textContent);
  await page.screenshot({ path: out("queue.png") });
  // submitting before anything is saved: the server's 409, in words
  await page.click(`[data-testid=task-row][data-task="${task}"] [data-testid=task-submit]`);
  await page.waitForSelector("[data-testid=task-message][data-kind=error]");
  const early = await page.$eval("[data-testid=task-message]", (el) => el.textContent);
  states.early = await serverPart(page, opts, task, annotator);
  await page.click(`[data-testid=task-row][data-task="${task}"] [data-testid=task-open]`);
  await page.waitForSelector("[data-viewport=stack][data-status=ready]", { timeout: 60000 });
  await page.waitForSelector(`${PANEL}[data-status=ready][data-seg]`, { timeout: 60000 });
  await page.waitForSelector("[data-testid=task-bar][data-state=open]");
  const opened = { url: page.url(), seg: await page.$eval(PANEL, (el) => el.dataset.seg) };
  await page.click("[data-annot-tool=Brush]");
  await paint(page, p.paint[0], p.paint[1]);
  const painted = await page.evaluate(() => window.carinaAnnotation.counts());
  await page.fill("[data-testid=annot-comment]", "first pass");
  await page.click("[data-testid=annot-save]");
  await page.waitForSelector(`${PANEL}[data-status=saved]`, { timeout: 30000 });
  const saved = await page.$eval(PANEL, (el) => ({ ...el.dataset }));
  states.saved = await serverPart(page, opts, task, annotator);
  // the task bar follows the save without a reload
  await page.waitForSelector("[data-testid=task-bar][data-state=in_progress]", { timeout: 10000 });
  states.savedBar = await page.$eval("[data-testid=task-bar] [data-testid=task-state]", (el) => el.textContent);
  await page.click("[data-testid=taskbar-submit]");
  await page.waitForSelector("[data-testid=task-bar][data-state=submitted]");
  await page.screenshot({ path: out("submitted.png") });
  states.submitted = await serverPart(page, opts, task, annotator);
  // A's own work on the review screen: listed, with no Accept / Return
  await page.goto(`${base}/review`);
  await page.waitForSelector(`[data-testid=review-row][data-task="${task}"]`);
  const ownReview = await rowOf(page, `[data-testid=review-row][data-task="${task}"]`);
  ownReview.reason = await page.$eval(`[data-testid=review-row][data-task="${task}"] [data-testid=review-not-allowed]`, (el) => el.dataset.reason);
  lap("annotate");

  // the reviewer returns it: first without a comment (refused), then with one
  await signInAs(page, opts, p.reviewer);
  await page.goto(`${base}/review`);
  const row = `[data-testid=review-row][data-task="${task}"][data-annotator="${annotator}"]`;
  await page.waitForSelector(row);
  const reviewerRow = await rowOf(page, row);
  await page.click(`${row} [data-testid=review-return]`);
  const noComment = await page.$eval("[data-testid=task-message]", (el) => ({ kind: el.dataset.kind, text: el.textContent }));
  states.afterEmptyReturn = await serverPart(page, opts, task, annotator);
  await page.fill(`${row} [data-testid=review-comment]`, p.comment);
  await page.click(`${row} [data-testid=review-return]`);
  await page.waitForSelector(`${row}`, { state: "detached" });
  const returnedMessage = await page.$eval("[data-testid=task-message]", (el) => el.textContent);
  states.returned = await serverPart(page, opts, task, annotator);
  lap("return");

  // A reads the comment in the queue and in the task bar, and submits again from the queue
  await signInAs(page, opts, p.a);
  await page.goto(`${base}/tasks`);
  const mine = `[data-testid=task-row][data-task="${task}"]`;
  await page.waitForSelector(`${mine}[data-state=returned]`);
  const comment = await page.$eval(`${mine} [data-testid=task-review-comment]`, (el) => el.textContent);
  await page.screenshot({ path: out("returned.png") });
  await page.click(`${mine} [data-testid=task-submit]`);
  await page.waitForSelector(mine, { state: "detached" });
  states.resubmitted = await serverPart(page, opts, task, annotator);
  const queueAfter = await page.$$eval("[data-testid=task-row]", (rows) => rows.length);
  lap("resubmit");

  // the reviewer opens the work in the viewer and accepts it from the task bar
  await signInAs(page, opts, p.reviewer);
  await page.goto(`${base}/review`);
  await page.waitForSelector(row);
  await page.click(`${row} [data-testid=review-open]`);
  await page.waitForSelector(`${PANEL}[data-status=ready][data-seg="${opened.seg}"]`, { timeout: 60000 });
  await page.waitForSelector("[data-testid=task-bar][data-state=submitted] [data-testid=review-accept]");
  const reviewView = { voxels: await page.$eval(PANEL, (el) => el.dataset.voxels), history: await page.$$eval("[data-testid=annot-history] li", (items) => items.length) };
  await page.click("[data-testid=task-bar] [data-testid=review-accept]");
  await page.waitForSelector("[data-testid=task-bar][data-state=accepted]");
  await page.screenshot({ path: out("accepted.png") });
  states.accepted = await serverPart(page, opts, task, annotator);
  lap("accept");

  // the manager's dashboard
  await signInAs(page, opts, p.manager);
  await page.goto(`${base}/dashboard`);
  await page.waitForSelector(`[data-testid=dashboard-people] tr[data-key="${annotator}"]`);
  await page.waitForSelector("[data-testid=dashboard-agreement][data-status=ready]");
  const person = await page.$eval(`[data-testid=dashboard-people] tr[data-key="${annotator}"]`, (tr) => ({ ...tr.dataset }));
  const milestone = await page.$eval(`[data-testid=dashboard-milestones] tr[data-key="${p.milestone}"]`, (tr) => ({ ...tr.dataset }));
  const agreement = await page.$$eval("[data-testid=agreement-task]", (blocks) =>
    blocks.map((block) => ({
      task: block.dataset.task,
      csv: block.querySelector("[data-testid=agreement-csv]")?.getAttribute("href"),
      rows: [...block.querySelectorAll("[data-testid=agreement-row]")].map((r) => ({ ...r.dataset, cells: [...r.querySelectorAll("td")].map((td) => td.textContent) })),
    })),
  );
  await page.screenshot({ path: out("dashboard.png"), fullPage: true });
  lap("dashboard");

  return { task, assignees, states, early, queued, opened, painted, saved, ownReview, reviewerRow, noComment, returnedMessage, comment, queueAfter, reviewView, person, milestone, agreement, timings };
});
