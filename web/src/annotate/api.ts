// The annotation API as the editing panel uses it (docs/annotation-api.md): label sets,
// segmentations with immutable versions, raw label maps, SEG import, and the WADO-RS fetch of a
// DICOM SEG stored in the archive.
import { ApiError, type ApiClient } from "../api/client";
import { readLabelmap, type RawLabelmap } from "../viewer/segmentations";
import { firstPart } from "./multipart";
import type { GrownBlock } from "./tools";

export interface LabelDef {
  value: number;
  name: string;
  color?: [number, number, number] | null;
}

export interface LabelSetView {
  id: number;
  name: string;
  labels: LabelDef[];
}

export interface VersionView {
  id: number;
  number: number;
  parent: number | null;
  author: string;
  created_at: string;
  tool: string;
  model: string;
  model_version: string;
  comment: string;
  voxel_counts: Record<string, number>;
}

export interface SegmentationView {
  id: number;
  study: string;
  series: string;
  name: string;
  label_set: LabelSetView;
  shape: [number, number, number];
  head: number | null;
  versions?: VersionView[];
}

/** A save refused because the segmentation's head moved on: `head` is the head version's id. */
export class ConflictError extends Error {
  constructor(
    readonly head: number | null,
    readonly detail: string,
  ) {
    super(detail);
  }
}

async function failure(response: Response): Promise<Error> {
  let detail = response.statusText;
  let head: number | null = null;
  try {
    const body = (await response.json()) as { detail?: unknown; head?: number | null };
    if (body.detail !== undefined) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    head = body.head ?? null;
  } catch {
    /* not JSON */
  }
  if (response.status === 409) return new ConflictError(head, detail);
  return new ApiError(response.status, detail);
}

export class AnnotationApi {
  readonly base: string;

  constructor(
    readonly api: ApiClient,
    readonly project: string,
  ) {
    this.base = `${api.base}/api/projects/${encodeURIComponent(project)}`;
  }

  private async request(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (init.method && init.method !== "GET") {
      for (const [key, value] of Object.entries(this.api.csrfHeaders())) headers.set(key, value);
    }
    const response = await fetch(`${this.base}${path}`, { ...init, headers, credentials: "same-origin" });
    if (!response.ok) throw await failure(response);
    return response;
  }

  private async json<T>(path: string, init: RequestInit = {}): Promise<T> {
    const headers = new Headers(init.headers);
    headers.set("Accept", "application/json");
    if (typeof init.body === "string") headers.set("Content-Type", "application/json");
    return (await (await this.request(path, { ...init, headers })).json()) as T;
  }

  labelSets(): Promise<LabelSetView[]> {
    return this.json("/label-sets");
  }

  segmentations(study: string, series: string): Promise<SegmentationView[]> {
    return this.json(`/segmentations?${new URLSearchParams({ study, series })}`);
  }

  segmentation(id: number): Promise<SegmentationView> {
    return this.json(`/segmentations/${id}`);
  }

  createSegmentation(study: string, series: string, labelSet: string, name: string): Promise<SegmentationView> {
    return this.json("/segmentations", {
      method: "POST",
      body: JSON.stringify({ study, series, label_set: labelSet, name }),
    });
  }

  async labelmap(seg: number, version: number): Promise<RawLabelmap> {
    return readLabelmap(await this.request(`/segmentations/${seg}/versions/${version}`));
  }

  /** Saves a label map as a new version; a stale `parent` throws ConflictError. */
  saveVersion(
    seg: number,
    labelmap: RawLabelmap,
    params: { parent: number | null; tool: string; comment: string },
  ): Promise<VersionView> {
    const query = new URLSearchParams({ tool: params.tool, comment: params.comment });
    if (params.parent !== null) query.set("parent", String(params.parent));
    // a copy of the values' own bytes (little-endian, as the browsers' typed arrays are)
    const bytes = new Uint8Array(labelmap.values.buffer, labelmap.values.byteOffset, labelmap.values.byteLength).slice().buffer;
    return this.json(`/segmentations/${seg}/versions?${query}`, {
      method: "POST",
      headers: {
        "Content-Type": "application/octet-stream",
        "X-Carina-Shape": labelmap.shape.join(","),
        "X-Carina-Dtype": labelmap.values instanceof Uint16Array ? "uint16" : "uint8",
      },
      body: bytes,
    });
  }

  /** Imports a DICOM SEG as a new version (an AI pre-label; `model` is recorded with it). */
  importSeg(seg: number, data: ArrayBuffer, params: { parent: number | null; model: string; comment: string }): Promise<VersionView> {
    const query = new URLSearchParams({ format: "seg", model: params.model, comment: params.comment });
    if (params.parent !== null) query.set("parent", String(params.parent));
    return this.json(`/segmentations/${seg}/import?${query}`, {
      method: "POST",
      headers: { "Content-Type": "application/dicom" },
      body: data,
    });
  }

  /** Region growing on the server from world points (LPS mm): clicks, or inside and outside seeds. */
  async grow(study: string, series: string, points: number[][], method: "click" | "seeds" = "click", background: number[][] = []): Promise<GrownBlock> {
    const response = await this.request(`/studies/${encodeURIComponent(study)}/series/${encodeURIComponent(series)}/grow`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ method, points, background }),
    });
    const triple = (name: string) => (response.headers.get(name) ?? "").split(",").map(Number) as [number, number, number];
    const shape = triple("X-Carina-Shape");
    const offset = triple("X-Carina-Offset");
    const block = new Uint8Array(await response.arrayBuffer());
    if (shape.length !== 3 || offset.length !== 3 || block.length !== shape[0] * shape[1] * shape[2]) {
      throw new Error("region growing answered a block of another shape");
    }
    return { shape, offset, block, voxels: Number(response.headers.get("X-Carina-Voxels") ?? 0) };
  }

  /** One stored instance as its DICOM file (WADO-RS, the single part of the multipart answer). */
  async instance(study: string, series: string, sop: string): Promise<ArrayBuffer> {
    const url = `${this.api.dicomweb(this.project)}/studies/${study}/series/${series}/instances/${sop}`;
    const response = await fetch(url, {
      headers: { Accept: 'multipart/related; type="application/dicom"' },
      credentials: "same-origin",
    });
    if (!response.ok) throw new ApiError(response.status, `WADO-RS: ${response.statusText}`);
    const type = response.headers.get("Content-Type") ?? "";
    return firstPart(new Uint8Array(await response.arrayBuffer()), type);
  }
}
