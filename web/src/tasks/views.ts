// Task screens: the annotator's queue ("My tasks"), review of submitted work, task creation and
// the project dashboard (progress per person and milestone, inter-rater agreement), and the task
// bar shown above the viewer when a task part is open.
import "./tasks.css";
import { tagValue, type DicomJson } from "../api/client";
import { h } from "../dom";
import { VERSION_SAVED } from "../events";
import type { AppContext } from "../main";
import { STATES, TasksApi, explain, taskUrl, type Assignment, type TaskView } from "./api";

const REVIEWER_ROLES = ["owner", "manager", "reviewer"];
const MANAGER_ROLES = ["owner", "manager"];
const ANNOTATOR_ROLES = ["owner", "manager", "annotator"];
const STATE_NAMES: Record<string, string> = {
  overdue: "Overdue",
  total: "Total",
  open: "Open",
  in_progress: "In progress",
  submitted: "Submitted",
  accepted: "Accepted",
  returned: "Returned",
};

export function roleIn(ctx: AppContext, project: string): string {
  return String(ctx.projects.find((p) => p.name === project)?.role ?? "");
}

function formatDue(due: string | null): string {
  if (!due) return "—";
  return due.slice(0, 10);
}

function isOverdue(task: TaskView, part?: Assignment): boolean {
  return !!task.due_at && new Date(task.due_at).getTime() < Date.now() && part?.state !== "accepted";
}

/** Patient name and study description of the project's studies, by study UID. */
async function caseNames(ctx: AppContext, project: string): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  try {
    for (const item of await ctx.api.qido(project, "studies")) {
      const label = [tagValue(item, "00100010"), tagValue(item, "00081030"), tagValue(item, "00080020")].filter(Boolean).join(" · ");
      names.set(tagValue(item, "0020000D"), label || tagValue(item, "0020000D"));
    }
  } catch {
    /* the UIDs are shown instead */
  }
  return names;
}

function message(): HTMLElement {
  return h("p", { class: "task-message", "data-testid": "task-message", role: "status" });
}

function say(element: HTMLElement, text: string, error = false): void {
  element.textContent = text;
  element.classList.toggle("error", error);
  element.dataset.kind = error ? "error" : "info";
}

function stateBadge(state: string): HTMLElement {
  return h("span", { class: `task-state state-${state}`, "data-testid": "task-state" }, STATE_NAMES[state] ?? state);
}

/** The review form of one submitted part: Accept, or Return with a required comment. */
function reviewControls(
  tasks: TasksApi,
  task: TaskView,
  part: Assignment,
  status: HTMLElement,
  done: (task: TaskView) => void,
): HTMLElement {
  const comment = h("textarea", { "data-testid": "review-comment", rows: 2, placeholder: "Comment (required to return)", "aria-label": "Review comment" });
  const accept = h("button", { type: "button", "data-testid": "review-accept" }, "Accept");
  const back = h("button", { type: "button", "data-testid": "review-return" }, "Return");
  const act = async (decision: "accept" | "return") => {
    if (decision === "return" && !comment.value.trim()) {
      say(status, "A returned task needs a comment saying what to change.", true);
      comment.focus();
      return;
    }
    accept.disabled = back.disabled = true;
    try {
      const updated = await tasks.review(task.id, part.annotator, decision, comment.value.trim());
      say(status, decision === "accept" ? `Accepted ${part.annotator}'s work on task #${task.id}.` : `Returned task #${task.id} to ${part.annotator}.`);
      done(updated);
    } catch (error) {
      say(status, explain(error), true);
    } finally {
      accept.disabled = back.disabled = false;
    }
  };
  accept.addEventListener("click", () => void act("accept"));
  back.addEventListener("click", () => void act("return"));
  return h("div", { class: "review-controls" }, comment, h("div", { class: "task-actions" }, accept, back));
}

/** Why the current user may not review a part (null: they may). */
function cannotReview(ctx: AppContext, project: string, task: TaskView): string | null {
  if (task.assignments.some((a) => a.annotator === ctx.me.name)) return "own";
  if (!REVIEWER_ROLES.includes(roleIn(ctx, project))) return "role";
  return null;
}

const REASONS: Record<string, string> = {
  own: "You annotate this task: someone else reviews it.",
  role: "Reviewing needs the reviewer, manager or owner role.",
};

// -- My tasks ------------------------------------------------------------------------------------

export async function mountMyTasks(container: HTMLElement, ctx: AppContext, project: string): Promise<void> {
  const tasks = new TasksApi(ctx.api, project);
  const status = message();
  const body = h("tbody");
  const table = h(
    "table",
    { class: "grid tasks", "data-testid": "my-tasks" },
    h("thead", {}, h("tr", {}, ...["Task", "Case", "Label set", "Instructions", "Due", "State", ""].map((t) => h("th", {}, t)))),
    body,
  );
  container.append(h("h2", {}, "My tasks"), status, table);
  const names = await caseNames(ctx, project);

  const render = async () => {
    let queue: TaskView[];
    try {
      queue = await tasks.queue();
    } catch (error) {
      say(status, explain(error), true);
      return;
    }
    table.dataset.count = String(queue.length);
    body.replaceChildren();
    if (queue.length === 0) {
      body.append(h("tr", {}, h("td", { colspan: 7, "data-testid": "no-tasks" }, "Nothing to do: no open, in-progress or returned task is assigned to you.")));
    }
    for (const task of queue) {
      const part = task.assignments.find((a) => a.annotator === ctx.me.name);
      if (!part) continue;
      const open = h("a", { href: taskUrl(project, task, ctx.me.name), "data-link": "", "data-testid": "task-open" }, "Open");
      const submit = h("button", { type: "button", "data-testid": "task-submit" }, "Submit");
      submit.addEventListener("click", async () => {
        submit.disabled = true;
        try {
          await tasks.transition(task.id, "submit");
          say(status, `Task #${task.id} submitted for review.`);
          await render();
        } catch (error) {
          say(status, explain(error), true);
          submit.disabled = false;
        }
      });
      const comment = part.state === "returned" && part.review_comment
        ? h("div", { class: "review-note", "data-testid": "task-review-comment" }, `Returned by ${part.reviewer ?? "a reviewer"}: ${part.review_comment}`)
        : null;
      body.append(
        h(
          "tr",
          { "data-testid": "task-row", "data-task": task.id, "data-state": part.state, class: isOverdue(task, part) ? "overdue" : "" },
          h("td", {}, `#${task.id} ${task.title}`, task.milestone ? h("div", { class: "muted" }, `Milestone: ${task.milestone}`) : null),
          h("td", { "data-testid": "task-case" }, names.get(task.study) ?? task.study),
          h("td", {}, task.label_set),
          h("td", { class: "instructions", "data-testid": "task-instructions" }, task.instructions, comment),
          h("td", { "data-testid": "task-due" }, formatDue(task.due_at), isOverdue(task, part) ? h("span", { class: "error" }, " overdue") : null),
          h("td", {}, stateBadge(part.state)),
          h("td", { class: "task-actions" }, open, submit),
        ),
      );
    }
  };
  await render();
}

// -- Review --------------------------------------------------------------------------------------

export async function mountReview(container: HTMLElement, ctx: AppContext, project: string): Promise<void> {
  const tasks = new TasksApi(ctx.api, project);
  const status = message();
  const body = h("tbody");
  const showAll = h("input", { type: "checkbox", "data-testid": "review-show-all" });
  const table = h(
    "table",
    { class: "grid tasks", "data-testid": "review-list" },
    h("thead", {}, h("tr", {}, ...["Task", "Case", "Annotator", "State", "Updated", ""].map((t) => h("th", {}, t)))),
    body,
  );
  container.append(
    h("h2", {}, "Review"),
    h("label", { class: "muted" }, showAll, " also show work already reviewed"),
    status,
    table,
  );
  const names = await caseNames(ctx, project);

  const render = async () => {
    let all: TaskView[];
    try {
      all = await tasks.tasks();
    } catch (error) {
      say(status, explain(error), true);
      return;
    }
    body.replaceChildren();
    let rows = 0;
    for (const task of all) {
      for (const part of task.assignments) {
        const wanted = part.state === "submitted" || (showAll.checked && (part.state === "accepted" || part.state === "returned"));
        if (!wanted) continue;
        rows++;
        const open = h("a", { href: taskUrl(project, task, part.annotator), "data-link": "", "data-testid": "review-open" }, "Open");
        const reason = cannotReview(ctx, project, task);
        const actions: (HTMLElement | string)[] = [open];
        if (part.state === "submitted") {
          if (reason) actions.push(h("span", { class: "muted", "data-testid": "review-not-allowed", "data-reason": reason }, REASONS[reason]));
          else actions.push(reviewControls(tasks, task, part, status, () => void render()));
        } else if (part.review_comment) {
          actions.push(h("span", { class: "muted" }, `${part.reviewer ?? ""}: ${part.review_comment}`));
        }
        body.append(
          h(
            "tr",
            { "data-testid": "review-row", "data-task": task.id, "data-annotator": part.annotator, "data-state": part.state },
            h("td", {}, `#${task.id} ${task.title}`),
            h("td", {}, names.get(task.study) ?? task.study),
            h("td", {}, part.annotator),
            h("td", {}, stateBadge(part.state)),
            h("td", { class: "muted" }, new Date(part.updated_at).toLocaleString()),
            h("td", { class: "task-actions" }, ...actions),
          ),
        );
      }
    }
    table.dataset.count = String(rows);
    if (rows === 0) body.append(h("tr", {}, h("td", { colspan: 6, "data-testid": "no-review" }, "No submitted work waits for review.")));
  };
  showAll.addEventListener("change", () => void render());
  await render();
}

// -- the task bar over the viewer ----------------------------------------------------------------

/**
 * The task part open in the viewer (`?task=&annotator=`): its instructions and state, Submit for
 * the annotator, Accept / Return for a reviewer.
 */
export async function mountTaskBar(
  container: HTMLElement,
  ctx: AppContext,
  project: string,
  taskId: number,
  annotator: string,
): Promise<HTMLElement> {
  const tasks = new TasksApi(ctx.api, project);
  const bar = h("section", { class: "task-bar", "data-testid": "task-bar", "data-task": taskId });
  container.prepend(bar);
  const status = message();
  const render = (task: TaskView) => {
    const part = task.assignments.find((a) => a.annotator === annotator);
    bar.dataset.state = part?.state ?? "";
    const actions = h("div", { class: "task-actions" });
    if (part && annotator === ctx.me.name && ["open", "in_progress", "returned"].includes(part.state)) {
      const submit = h("button", { type: "button", "data-testid": "taskbar-submit" }, "Submit for review");
      submit.addEventListener("click", async () => {
        submit.disabled = true;
        try {
          render(await tasks.transition(task.id, "submit"));
          say(status, "Submitted for review.");
        } catch (error) {
          say(status, explain(error), true);
          submit.disabled = false;
        }
      });
      actions.append(submit, h("span", { class: "muted" }, "Save your segmentation first (Annotate panel)."));
    } else if (part && part.state === "submitted") {
      const reason = cannotReview(ctx, project, task);
      if (reason) actions.append(h("span", { class: "muted", "data-testid": "review-not-allowed", "data-reason": reason }, REASONS[reason]));
      else actions.append(reviewControls(tasks, task, part, status, render));
    }
    bar.replaceChildren(
      h(
        "div",
        { class: "task-head" },
        h("strong", {}, `Task #${task.id} ${task.title}`),
        part ? stateBadge(part.state) : null,
        h("span", { class: "muted" }, `${annotator} · ${task.label_set} · due ${formatDue(task.due_at)}`),
        h("a", { href: `/p/${encodeURIComponent(project)}/tasks`, "data-link": "" }, "My tasks"),
      ),
      h("p", { class: "instructions", "data-testid": "taskbar-instructions" }, task.instructions),
      part?.review_comment ? h("p", { class: "review-note", "data-testid": "taskbar-review-comment" }, `Review (${part.reviewer ?? ""}): ${part.review_comment}`) : "",
      actions,
      status,
    );
  };
  try {
    render(await tasks.task(taskId));
  } catch (error) {
    bar.replaceChildren(h("p", { class: "error" }, explain(error)));
  }
  // a saved version moves an open part to "in progress": show the server's state again
  const refresh = () => {
    if (!bar.isConnected) {
      document.removeEventListener(VERSION_SAVED, refresh);
      return;
    }
    tasks.task(taskId).then(render, () => undefined);
  };
  document.addEventListener(VERSION_SAVED, refresh);
  return bar;
}

// -- New task (managers) -------------------------------------------------------------------------

export async function mountNewTask(container: HTMLElement, ctx: AppContext, project: string): Promise<void> {
  const tasks = new TasksApi(ctx.api, project);
  const status = message();
  container.append(h("h2", {}, "New task"));
  if (!MANAGER_ROLES.includes(roleIn(ctx, project))) {
    container.append(h("p", { class: "error", "data-testid": "task-new-denied" }, "Creating tasks needs the manager or owner role."));
    return;
  }
  const study = h("select", { "data-testid": "task-study", "aria-label": "Study" });
  const series = h("select", { "data-testid": "task-series", "aria-label": "Series" });
  const labelSet = h("select", { "data-testid": "task-labelset", "aria-label": "Label set" });
  const title = h("input", { "data-testid": "task-title", placeholder: "Title", "aria-label": "Title" });
  const instructions = h("textarea", { "data-testid": "task-instructions", rows: 4, placeholder: "Instructions for the annotators", "aria-label": "Instructions" });
  const milestone = h("input", { "data-testid": "task-milestone", placeholder: "Milestone", "aria-label": "Milestone" });
  const due = h("input", { type: "date", "data-testid": "task-due", "aria-label": "Due date" });
  const assignees = h("div", { class: "assignees", "data-testid": "task-assignees" });
  const create = h("button", { type: "button", "data-testid": "task-create" }, "Create task");

  const [studies, sets, members] = await Promise.all([
    ctx.api.qido(project, "studies"),
    tasks.labelSets().catch(() => []),
    tasks.members().catch(() => []),
  ]);
  study.append(
    ...studies.map((s: DicomJson) =>
      h("option", { value: tagValue(s, "0020000D") }, [tagValue(s, "00100010"), tagValue(s, "00081030"), tagValue(s, "00080020")].filter(Boolean).join(" · ") || tagValue(s, "0020000D")),
    ),
  );
  labelSet.append(...sets.map((s) => h("option", { value: s.name }, s.name)));
  for (const member of members.filter((m) => ANNOTATOR_ROLES.includes(m.role))) {
    assignees.append(
      h("label", {}, h("input", { type: "checkbox", value: member.user, "data-testid": "task-assignee" }), ` ${member.user} (${member.role})`),
    );
  }
  const loadSeries = async () => {
    series.replaceChildren();
    if (!study.value) return;
    const list = await ctx.api.qido(project, `studies/${study.value}/series`);
    for (const item of list) {
      if (["SEG", "SR", "RTSTRUCT", "PR"].includes(tagValue(item, "00080060"))) continue;
      series.append(
        h(
          "option",
          { value: tagValue(item, "0020000E") },
          `${tagValue(item, "00080060")} #${tagValue(item, "00200011")} ${tagValue(item, "0008103E")} (${tagValue(item, "00201209")} images)`,
        ),
      );
    }
  };
  study.addEventListener("change", () => void loadSeries());
  await loadSeries();

  create.addEventListener("click", async () => {
    const chosen = [...assignees.querySelectorAll<HTMLInputElement>("input:checked")].map((box) => box.value);
    if (!study.value || !series.value || !labelSet.value) return say(status, "Choose a study, a series and a label set.", true);
    if (chosen.length === 0) return say(status, "Assign the task to at least one annotator.", true);
    create.disabled = true;
    try {
      const made = await tasks.create({
        study: study.value,
        series: series.value,
        label_set: labelSet.value,
        assignees: chosen,
        title: title.value.trim(),
        instructions: instructions.value.trim(),
        milestone: milestone.value.trim(),
        // due at the end of the chosen day (UTC)
        due_at: due.value ? `${due.value}T23:59:59Z` : null,
      });
      status.dataset.task = String(made.id);
      say(status, `Task #${made.id} created for ${chosen.join(", ")}.`);
    } catch (error) {
      say(status, explain(error), true);
    } finally {
      create.disabled = false;
    }
  });

  const field = (name: string, input: HTMLElement) => h("label", { class: "field" }, h("span", {}, name), input);
  const form = h(
      "form",
      { class: "task-form", "data-testid": "task-form" },
      field("Study", study),
      field("Series", series),
      field("Label set", labelSet),
      field("Title", title),
      field("Instructions", instructions),
      field("Assignees", assignees),
      field("Due date", due),
      field("Milestone", milestone),
      create,
    );
  form.addEventListener("submit", (event) => event.preventDefault());
  container.append(form, status);
}

// -- Dashboard -----------------------------------------------------------------------------------

const fmt = (value: number | null | undefined, digits = 2) => (value === null || value === undefined ? "—" : value.toFixed(digits));

export async function mountDashboard(container: HTMLElement, ctx: AppContext, project: string): Promise<void> {
  const tasks = new TasksApi(ctx.api, project);
  const status = message();
  const base = `/p/${encodeURIComponent(project)}`;
  const manager = MANAGER_ROLES.includes(roleIn(ctx, project));
  container.append(
    h("div", { class: "row" }, h("h2", {}, "Dashboard"), manager ? h("a", { href: `${base}/tasks/new`, "data-link": "", "data-testid": "task-new-link" }, "New task") : ""),
    status,
  );
  let dashboard;
  let all: TaskView[];
  try {
    [dashboard, all] = await Promise.all([tasks.dashboard(), tasks.tasks()]);
  } catch (error) {
    say(status, explain(error), true);
    return;
  }
  const columns = [...STATES, "overdue", "total"] as const;
  const progress = (title: string, testid: string, rows: Record<string, Record<string, number>>, keyName: string) =>
    h(
      "section",
      {},
      h("h3", {}, title),
      h(
        "table",
        { class: "grid", "data-testid": testid },
        h("thead", {}, h("tr", {}, h("th", {}, keyName), ...columns.map((c) => h("th", {}, STATE_NAMES[c] ?? c)), h("th", {}, "Done"))),
        h(
          "tbody",
          {},
          ...Object.entries(rows).map(([key, row]) =>
            h(
              "tr",
              { "data-key": key, ...Object.fromEntries(columns.map((c) => [`data-${c.replace("_", "-")}`, row[c] ?? 0])) },
              h("td", {}, key || "(none)"),
              ...columns.map((c) => h("td", { "data-col": c }, String(row[c] ?? 0))),
              h(
                "td",
                {},
                h("progress", { max: 1, value: row.done_fraction ?? 0 }),
                ` ${Math.round((row.done_fraction ?? 0) * 100)} %`,
              ),
            ),
          ),
        ),
      ),
    );
  container.append(
    h("p", { class: "muted", "data-testid": "dashboard-tasks" }, `${dashboard.tasks} task(s)`),
    progress("Per person", "dashboard-people", dashboard.people, "Annotator"),
    progress("Per milestone", "dashboard-milestones", dashboard.milestones, "Milestone"),
  );

  const agreement = h("section", { "data-testid": "dashboard-agreement" }, h("h3", {}, "Agreement (tasks with several annotators)"));
  container.append(agreement);
  const shared = all.filter((t) => t.assignments.length > 1);
  if (shared.length === 0) agreement.append(h("p", { class: "muted" }, "No task has several annotators yet."));
  for (const task of shared) {
    const block = h(
      "div",
      { class: "agreement", "data-testid": "agreement-task", "data-task": task.id },
      h(
        "h4",
        {},
        `#${task.id} ${task.title} `,
        h("a", { href: tasks.agreementCsvUrl(task.id), download: `task-${task.id}-agreement.csv`, "data-testid": "agreement-csv" }, "CSV"),
      ),
    );
    agreement.append(block);
    try {
      const rows = await tasks.agreement(task.id);
      block.append(
        h(
          "table",
          { class: "grid" },
          h("thead", {}, h("tr", {}, ...["Label", "Annotators", "Dice", "HD95 (mm)", "Volume A (mL)", "Volume B (mL)", "Difference (mL)"].map((t) => h("th", {}, t)))),
          h(
            "tbody",
            {},
            ...rows.map((r) =>
              h(
                "tr",
                { "data-testid": "agreement-row", "data-label": r.label, "data-dice": r.dice ?? "" },
                h("td", {}, `${r.label} ${r.name}`),
                h("td", {}, `${r.rater_a} / ${r.rater_b}`),
                h("td", {}, fmt(r.dice, 3)),
                h("td", {}, fmt(r.hd95_mm, 1)),
                h("td", {}, fmt(r.volume_a_ml)),
                h("td", {}, fmt(r.volume_b_ml)),
                h("td", {}, fmt(r.volume_diff_ml)),
              ),
            ),
          ),
        ),
      );
      if (rows.length === 0) block.append(h("p", { class: "muted" }, "No figures yet."));
    } catch (error) {
      block.append(h("p", { class: "muted" }, explain(error)));
    }
  }
  agreement.dataset.status = "ready";
}
