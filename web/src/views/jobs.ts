import type { AppContext } from "../main";
import type { Job } from "../api/client";
import { h } from "../dom";

interface JobEvent {
  id: number;
  kind: string;
  state: string;
  progress: number;
  message: string;
}

/**
 * The jobs of a project: listed once over REST, then kept current by the server's event stream
 * (`/api/projects/{p}/jobs/events`; EventSource reconnects by itself).
 */
export function mountJobs(container: HTMLElement, ctx: AppContext, project: string): () => void {
  const body = h("tbody");
  const live = h("span", { class: "muted", "data-testid": "jobs-live" }, "connecting…");
  const table = h(
    "table",
    { class: "grid", "data-testid": "jobs-table" },
    h("thead", {}, h("tr", {}, ...["Id", "Kind", "Status", "Progress", "Message"].map((t) => h("th", {}, t)))),
    body,
  );
  container.append(h("div", { class: "row" }, h("h2", {}, "Jobs"), live), table);
  const rows = new Map<number, HTMLTableRowElement>();

  const show = (job: JobEvent) => {
    let row = rows.get(job.id);
    if (!row) {
      row = h("tr", { "data-job": job.id });
      rows.set(job.id, row);
      body.prepend(row);
    }
    row.dataset.status = job.state;
    row.replaceChildren(
      h("td", {}, String(job.id)),
      h("td", {}, job.kind),
      h("td", { "data-testid": "job-status" }, job.state),
      h("td", {}, h("progress", { max: "1", value: String(job.progress) }), ` ${Math.round(job.progress * 100)} %`),
      h("td", {}, job.message),
    );
  };

  void ctx.api
    .jobs(project)
    .then((jobs: Job[]) => {
      for (const job of [...jobs].sort((a, b) => a.id - b.id)) {
        show({ id: job.id, kind: job.kind, state: job.status, progress: job.progress, message: job.message || job.error });
      }
    })
    .catch((error) => (live.textContent = `cannot list jobs: ${String(error)}`));
  const events = new EventSource(`/api/projects/${encodeURIComponent(project)}/jobs/events`, { withCredentials: true });
  events.addEventListener("open", () => (live.textContent = "live"));
  events.addEventListener("error", () => (live.textContent = "reconnecting…"));
  events.addEventListener("job", (event) => show(JSON.parse((event as MessageEvent<string>).data) as JobEvent));
  return () => events.close();
}
