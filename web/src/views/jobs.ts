import type { AppContext } from "../main";
import { h } from "../dom";

/** The jobs of a project, refreshed every few seconds while shown. */
export function mountJobs(container: HTMLElement, ctx: AppContext, project: string): () => void {
  const body = h("tbody");
  const table = h(
    "table",
    { class: "grid", "data-testid": "jobs-table" },
    h("thead", {}, h("tr", {}, ...["Id", "Kind", "Status", "Progress", "Message"].map((t) => h("th", {}, t)))),
    body,
  );
  container.append(h("h2", {}, "Jobs"), table);
  let stopped = false;
  const refresh = async () => {
    const jobs = await ctx.api.jobs(project).catch(() => []);
    body.replaceChildren(
      ...jobs.map((job) =>
        h(
          "tr",
          { "data-job": job.id },
          h("td", {}, String(job.id)),
          h("td", {}, job.kind),
          h("td", { "data-testid": "job-status" }, job.status),
          h("td", {}, `${Math.round(job.progress * 100)} %`),
          h("td", {}, job.message || job.error),
        ),
      ),
    );
  };
  void refresh();
  const timer = window.setInterval(() => {
    if (!stopped) void refresh();
  }, 3000);
  return () => {
    stopped = true;
    window.clearInterval(timer);
  };
}
