// The task routes of the annotation API (docs/annotation-api.md, "Tasks and review"): tasks,
// the caller's queue, transitions, review, agreement and the project dashboard.
import { ApiError, type ApiClient } from "../api/client";

export type TaskState = "open" | "in_progress" | "submitted" | "accepted" | "returned";
export const STATES: TaskState[] = ["open", "in_progress", "submitted", "accepted", "returned"];

export interface Assignment {
  annotator: string;
  state: TaskState;
  segmentation: number | null;
  reviewer: string | null;
  review_comment: string;
  updated_at: string;
}

export interface TaskView {
  id: number;
  study: string;
  series: string;
  label_set: string;
  title: string;
  instructions: string;
  milestone: string;
  due_at: string | null;
  created_by: string;
  created_at: string;
  assignments: Assignment[];
}

export interface TaskIn {
  study: string;
  series: string;
  label_set: string;
  assignees: string[];
  title: string;
  instructions: string;
  milestone: string;
  due_at: string | null;
}

export type ProgressRow = Record<TaskState | "total" | "overdue" | "done_fraction", number>;

export interface Dashboard {
  tasks: number;
  people: Record<string, ProgressRow>;
  milestones: Record<string, ProgressRow>;
}

export interface AgreementRow {
  label: number;
  name: string;
  rater_a: string;
  rater_b: string;
  dice: number | null;
  hd95_mm: number | null;
  volume_a_ml: number;
  volume_b_ml: number;
  volume_diff_ml: number;
}

export interface Member {
  user: string;
  role: string;
}

export interface LabelSetSummary {
  id: number;
  name: string;
}

/** A refused request in words a person can act on (403 and 409 say why). */
export function explain(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 403) return `Not allowed: ${error.detail}`;
    if (error.status === 409) return `Not possible now: ${error.detail}`;
    if (error.status === 422) return `Not accepted: ${error.detail}`;
    return `Error ${error.status}: ${error.detail}`;
  }
  return String(error instanceof Error ? error.message : error);
}

export class TasksApi {
  readonly base: string;

  constructor(
    readonly api: ApiClient,
    readonly project: string,
  ) {
    this.base = `${api.base}/api/projects/${encodeURIComponent(project)}`;
  }

  private async json<T>(path: string, method = "GET", body?: unknown): Promise<T> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (method !== "GET") Object.assign(headers, this.api.csrfHeaders());
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(`${this.base}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const parsed = (await response.json()) as { detail?: unknown };
        if (parsed.detail !== undefined) detail = typeof parsed.detail === "string" ? parsed.detail : JSON.stringify(parsed.detail);
      } catch {
        /* not JSON */
      }
      throw new ApiError(response.status, detail);
    }
    return (await response.json()) as T;
  }

  queue(): Promise<TaskView[]> {
    return this.json("/queue");
  }

  tasks(milestone?: string): Promise<TaskView[]> {
    return this.json(milestone ? `/tasks?${new URLSearchParams({ milestone })}` : "/tasks");
  }

  task(id: number): Promise<TaskView> {
    return this.json(`/tasks/${id}`);
  }

  create(body: TaskIn): Promise<TaskView> {
    return this.json("/tasks", "POST", body);
  }

  transition(id: number, action: "start" | "submit"): Promise<TaskView> {
    return this.json(`/tasks/${id}/transition`, "POST", { action });
  }

  review(id: number, annotator: string, decision: "accept" | "return", comment: string): Promise<TaskView> {
    return this.json(`/tasks/${id}/review`, "POST", { annotator, decision, comment });
  }

  agreement(id: number): Promise<AgreementRow[]> {
    return this.json(`/tasks/${id}/agreement`);
  }

  /** The agreement table as CSV (a plain link: the session cookie authenticates it). */
  agreementCsvUrl(id: number): string {
    return `${this.base}/tasks/${id}/agreement?format=csv`;
  }

  dashboard(): Promise<Dashboard> {
    return this.json("/annotation-dashboard");
  }

  members(): Promise<Member[]> {
    return this.json("/members");
  }

  labelSets(): Promise<LabelSetSummary[]> {
    return this.json("/label-sets");
  }
}

/** The viewer page of a task part: its series with the annotator's segmentation open. */
export function taskUrl(project: string, task: TaskView, annotator: string): string {
  const part = task.assignments.find((a) => a.annotator === annotator);
  const query = new URLSearchParams({ series: task.series, task: String(task.id), annotator });
  if (part?.segmentation) query.set("seg", String(part.segmentation));
  return `/p/${encodeURIComponent(project)}/study/${encodeURIComponent(task.study)}?${query}`;
}
