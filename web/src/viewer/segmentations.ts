// Segmentation overlays: DICOM SEG series of the open series, fetched as label maps on its grid
// (viewer API) and shown as Cornerstone labelmap segmentations, with per-label visibility,
// colour, fill opacity and outline/fill.
import { imageLoader } from "@cornerstonejs/core";
import { Enums as ToolEnums, segmentation } from "@cornerstonejs/tools";
import { h } from "../dom";
import { loadMesh, type MeshActor } from "./meshes";
import type { Viewer } from "./viewer";

export interface SegLabel {
  value: number;
  name: string;
  color: [number, number, number];
}

export interface SegSummary {
  series: string;
  sop_instance_uid: string;
  description: string;
  labels: SegLabel[];
}

const LABELMAP = ToolEnums.SegmentationRepresentations.Labelmap;

/** One SEG series loaded as a labelmap segmentation of the viewer's series. */
export class LoadedSegmentation {
  visible = new Map<number, boolean>();
  colors = new Map<number, [number, number, number]>();
  opacity = 0.5;
  outline = true;
  fill = true;

  constructor(
    readonly id: string,
    readonly summary: SegSummary,
    readonly voxels: number,
  ) {
    for (const label of summary.labels) {
      this.visible.set(label.value, true);
      this.colors.set(label.value, label.color);
    }
  }
}

function seriesBase(project: string, study: string, series: string): string {
  return `/api/projects/${encodeURIComponent(project)}/studies/${study}/series/${series}`;
}

export async function listSegmentations(project: string, study: string, series: string): Promise<SegSummary[]> {
  const response = await fetch(`${seriesBase(project, study, series)}/segmentations`, { credentials: "same-origin" });
  if (response.status === 404) return [];
  if (!response.ok) throw new Error(`segmentations: HTTP ${response.status}`);
  return (await response.json()) as SegSummary[];
}

/** Fetches a SEG's label map and registers it as a Cornerstone labelmap on the series' images. */
export async function loadSegmentation(viewer: Viewer, project: string, summary: SegSummary): Promise<LoadedSegmentation> {
  const { study, series } = viewer.series;
  const response = await fetch(`${seriesBase(project, study, series)}/segmentations/${summary.series}/labelmap`, {
    credentials: "same-origin",
  });
  if (!response.ok) throw new Error(`label map: HTTP ${response.status}`);
  const id = `${viewer.id}-seg-${summary.series}`;
  const { voxels } = registerLabelmap(viewer, id, await readLabelmap(response));
  const loaded = new LoadedSegmentation(id, summary, voxels);
  viewer.addSegmentation(loaded);
  return loaded;
}

/** A label map on the wire (X-Carina-Shape / X-Carina-Dtype headers, raw little-endian body). */
export interface RawLabelmap {
  shape: number[];
  values: Uint8Array | Uint16Array;
}

export async function readLabelmap(response: Response): Promise<RawLabelmap> {
  const shape = (response.headers.get("X-Carina-Shape") ?? "").split(",").map(Number);
  const dtype = response.headers.get("X-Carina-Dtype") ?? "uint8";
  const buffer = await response.arrayBuffer();
  return { shape, values: dtype === "uint16" ? new Uint16Array(buffer) : new Uint8Array(buffer) };
}

/**
 * Puts a (slices, rows, columns) label map on labelmap images derived from the series' images
 * (16-bit images for a Uint16Array map) and registers them as the Cornerstone labelmap segmentation `id`; returns the labelled voxels
 * and the labelmap images' ids (in the series' order).
 */
export function registerLabelmap(viewer: Viewer, id: string, labelmap: RawLabelmap): { voxels: number; imageIds: string[] } {
  const { imageIds, rows, columns } = viewer.series;
  const { shape, values } = labelmap;
  if (shape.length !== 3 || shape[0] !== imageIds.length || shape[1] !== rows || shape[2] !== columns) {
    throw new Error(`the label map's grid ${shape.join("x")} is not the series' ${imageIds.length}x${rows}x${columns}`);
  }
  const plane = rows * columns;
  // label values above 255 need 16-bit labelmap images (Cornerstone's labelmap helper makes 8-bit ones)
  const images =
    values instanceof Uint16Array
      ? imageLoader.createAndCacheDerivedImages(imageIds, {
          targetBuffer: { type: "Uint16Array" },
          voxelRepresentation: imageLoader.getDefaultLabelmapVoxelRepresentation(),
        })
      : imageLoader.createAndCacheDerivedLabelmapImages(imageIds);
  let voxels = 0;
  images.forEach((image, k) => {
    const slice = values.subarray(k * plane, (k + 1) * plane);
    const target = image.voxelManager ? (image.voxelManager.getScalarData() as ArrayLike<number> & { set: (a: ArrayLike<number>) => void }) : image.getPixelData();
    target.set(slice);
    for (let i = 0; i < slice.length; i++) if (slice[i]) voxels++;
  });
  segmentation.addSegmentations([
    {
      segmentationId: id,
      representation: { type: LABELMAP, data: { imageIds: images.map((image) => image.imageId) } },
    },
  ]);
  return { voxels, imageIds: images.map((image) => image.imageId) };
}

/** Shows a loaded segmentation on the 2D viewports of the viewer with its current style. */
export function applySegmentation(viewer: Viewer, seg: LoadedSegmentation): void {
  for (const viewportId of viewer.overlayViewportIds()) {
    const present = segmentation.state
      .getSegmentationRepresentations(viewportId, { segmentationId: seg.id })
      .some((r) => r.type === LABELMAP);
    if (!present) segmentation.addLabelmapRepresentationToViewport(viewportId, [{ segmentationId: seg.id }]);
    segmentation.config.style.setStyle(
      { viewportId, segmentationId: seg.id, type: LABELMAP },
      { renderFill: seg.fill, renderOutline: seg.outline, fillAlpha: seg.opacity, outlineWidth: 2, outlineOpacity: 1 },
    );
    for (const [value, color] of seg.colors) {
      segmentation.config.color.setSegmentIndexColor(viewportId, seg.id, value, [...color, 255]);
      segmentation.config.visibility.setSegmentIndexVisibility(
        viewportId,
        { segmentationId: seg.id, type: LABELMAP },
        value,
        seg.visible.get(value) ?? true,
      );
    }
  }
  viewer.renderAll();
}

function hex(color: [number, number, number]): string {
  return `#${color.map((c) => c.toString(16).padStart(2, "0")).join("")}`;
}

/** The overlay panel: one entry per SEG series, per-label controls once shown. */
export async function mountSegmentationPanel(container: HTMLElement, viewer: Viewer, project: string): Promise<void> {
  const panel = h("div", { class: "segmentations", "data-testid": "segmentations" }, h("h3", {}, "Segmentations"));
  container.append(panel);
  let found: SegSummary[] = [];
  try {
    found = await listSegmentations(project, viewer.series.study, viewer.series.series);
  } catch (error) {
    panel.append(h("p", { class: "muted" }, String(error)));
    return;
  }
  if (!found.length) panel.append(h("p", { class: "muted", "data-testid": "no-segmentations" }, "None"));
  for (const summary of found) {
    const entry = h("div", { class: "seg", "data-seg": summary.series });
    const show = h("button", { type: "button", "data-testid": "seg-show" }, `Show ${summary.description || "segmentation"}`);
    entry.append(show);
    panel.append(entry);
    show.addEventListener("click", async () => {
      show.disabled = true;
      entry.dataset.status = "loading";
      try {
        const seg = await loadSegmentation(viewer, project, summary);
        applySegmentation(viewer, seg);
        show.remove();
        entry.append(controls(viewer, seg, project));
        entry.dataset.status = "shown";
        entry.dataset.voxels = String(seg.voxels);
      } catch (error) {
        entry.dataset.status = "error";
        entry.append(h("p", { class: "error" }, String(error)));
      }
    });
  }
}

function controls(viewer: Viewer, seg: LoadedSegmentation, project: string): HTMLElement {
  const box = h("div", { class: "seg-controls" }, h("strong", {}, seg.summary.description || "Segmentation"));
  const opacity = h("input", { type: "range", min: "0", max: "1", step: "0.05", value: String(seg.opacity), "data-testid": "seg-opacity", "aria-label": "Opacity" });
  opacity.addEventListener("input", () => {
    seg.opacity = Number(opacity.value);
    applySegmentation(viewer, seg);
  });
  const outline = h("input", { type: "checkbox", "data-testid": "seg-outline", checked: seg.outline });
  outline.addEventListener("change", () => {
    seg.outline = outline.checked;
    applySegmentation(viewer, seg);
  });
  const fill = h("input", { type: "checkbox", "data-testid": "seg-fill", checked: seg.fill });
  fill.addEventListener("change", () => {
    seg.fill = fill.checked;
    applySegmentation(viewer, seg);
  });
  box.append(
    h("label", {}, "Opacity ", opacity),
    h("label", {}, outline, " outline"),
    h("label", {}, fill, " fill"),
  );
  for (const label of seg.summary.labels) {
    const visible = h("input", { type: "checkbox", checked: true, "data-testid": "seg-label-visible" });
    const color = h("input", { type: "color", value: hex(label.color), "data-testid": "seg-label-color" });
    visible.addEventListener("change", () => {
      seg.visible.set(label.value, visible.checked);
      applySegmentation(viewer, seg);
    });
    color.addEventListener("input", () => {
      const v = color.value;
      seg.colors.set(label.value, [1, 3, 5].map((i) => parseInt(v.slice(i, i + 2), 16)) as [number, number, number]);
      applySegmentation(viewer, seg);
    });
    // the label's surface in the 3D viewports, loaded on first use
    const mesh = h("input", { type: "checkbox", "data-testid": "seg-label-mesh", title: "3D mesh" });
    let actor: MeshActor | null = null;
    mesh.addEventListener("change", async () => {
      const row = mesh.closest<HTMLElement>("[data-label]");
      try {
        if (mesh.checked && !actor) {
          if (row) row.dataset.mesh = "loading";
          const { study, series } = viewer.series;
          const url = `${seriesBase(project, study, series)}/segmentations/${seg.summary.series}/meshes/${label.value}`;
          actor = await loadMesh(url, `${seg.id}-mesh-${label.value}`, seg.colors.get(label.value) ?? label.color);
        }
        if (actor) viewer.setMesh(actor, mesh.checked);
        if (row) row.dataset.mesh = mesh.checked ? `shown:${actor?.points ?? 0}` : "hidden";
      } catch (error) {
        if (row) row.dataset.mesh = `error: ${String(error)}`;
      }
    });
    box.append(
      h("div", { class: "seg-label", "data-label": label.value }, visible, color, ` ${label.value} ${label.name} `, h("label", {}, mesh, "3D")),
    );
  }
  return box;
}
