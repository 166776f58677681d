// The geometric-annotation routes (docs/annotation-api.md, "Geometric annotations").
import { ApiError, type ApiClient } from "../api/client";

export type ShapeKind = "point" | "line" | "angle" | "box" | "ellipse" | "polygon";

export interface ShapeIn {
  study: string;
  series: string;
  sop: string;
  kind: ShapeKind;
  points: [number, number, number][];
  label: string;
}

export interface ShapeView extends ShapeIn {
  id: number;
  frame_of_reference: string;
  author: string;
  created_at: string;
}

export class ShapesApi {
  readonly base: string;

  constructor(
    readonly api: ApiClient,
    readonly project: string,
  ) {
    this.base = `${api.base}/api/projects/${encodeURIComponent(project)}`;
  }

  private async json<T>(path: string, init: RequestInit = {}): Promise<T> {
    const headers = new Headers(init.headers);
    headers.set("Accept", "application/json");
    if (init.method && init.method !== "GET") {
      headers.set("Content-Type", "application/json");
      for (const [key, value] of Object.entries(this.api.csrfHeaders())) headers.set(key, value);
    }
    const response = await fetch(`${this.base}${path}`, { ...init, headers, credentials: "same-origin" });
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const body = (await response.json()) as { detail?: unknown };
        if (body.detail !== undefined) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      } catch {
        /* not JSON */
      }
      throw new ApiError(response.status, detail);
    }
    return (await response.json()) as T;
  }

  list(study: string, series: string): Promise<ShapeView[]> {
    return this.json(`/shapes?${new URLSearchParams({ study, series })}`);
  }

  add(shape: ShapeIn): Promise<ShapeView> {
    return this.json("/shapes", { method: "POST", body: JSON.stringify(shape) });
  }

  /** The series' shapes as a DICOM SR (a plain link: the session cookie authenticates it). */
  srUrl(study: string, series: string): string {
    return `${this.base}/studies/${encodeURIComponent(study)}/series/${encodeURIComponent(series)}/shapes/sr`;
  }
}
