// Geometric annotations drawn in the viewer and kept on the server (docs/annotation-api.md,
// "Geometric annotations"): Cornerstone's Probe, Length, Angle, RectangleROI, EllipticalROI and
// PlanarFreehandROI tools, as tool instances of their own so that they are told apart from the
// viewer's measurements. A completed drawing is posted to `/shapes` with its points in patient
// coordinates (Cornerstone's world coordinates are LPS mm, as the server's), the instance and the
// label; the series' stored shapes are drawn again when it opens; "Export SR" downloads them as a
// TID 1500 measurement report.
import "./shapes.css";
import { eventTarget, metaData, type Types } from "@cornerstonejs/core";
import {
  AngleTool,
  EllipticalROITool,
  Enums as ToolEnums,
  LengthTool,
  PlanarFreehandROITool,
  ProbeTool,
  RectangleROITool,
  ToolGroupManager,
  addTool,
  annotation,
  state as toolState,
  type Types as ToolTypes,
} from "@cornerstonejs/tools";
import type { ApiClient } from "../api/client";
import { h } from "../dom";
import type { Viewer } from "../viewer/viewer";
import { ShapesApi, type ShapeKind, type ShapeView } from "./api";
import { fromCornerstone, toCornerstone, type Point } from "./geometry";

interface ShapeTool {
  name: string;
  parent: string;
  label: string;
}

/** The drawing tools, by the kind of shape they make. */
export const SHAPE_TOOLS: Record<ShapeKind, ShapeTool> = {
  point: { name: "ShapePoint", parent: ProbeTool.toolName, label: "Point" },
  line: { name: "ShapeLine", parent: LengthTool.toolName, label: "Line" },
  angle: { name: "ShapeAngle", parent: AngleTool.toolName, label: "Angle" },
  box: { name: "ShapeBox", parent: RectangleROITool.toolName, label: "Box" },
  ellipse: { name: "ShapeEllipse", parent: EllipticalROITool.toolName, label: "Ellipse" },
  polygon: { name: "ShapePolygon", parent: PlanarFreehandROITool.toolName, label: "Polygon" },
};
const KIND_OF: Record<string, ShapeKind> = Object.fromEntries(
  Object.entries(SHAPE_TOOLS).map(([kind, tool]) => [tool.name, kind as ShapeKind]),
);
const PARENTS = [ProbeTool, LengthTool, AngleTool, RectangleROITool, EllipticalROITool, PlanarFreehandROITool];
const MAX_POINTS = 10000;

declare global {
  interface Window {
    /** The open shapes panel (automation hook for the browser tests). */
    carinaShapes?: ShapesPanel;
  }
}

export interface ShapesOptions {
  /** Called when a drawing tool takes the primary button (other panels let go of theirs). */
  onActivate?: () => void;
}

/** A shape as the panel lists it: its annotation, its stored id and the viewer's figures. */
export interface ShapeEntry {
  uid: string;
  kind: ShapeKind;
  id: number | null;
  label: string;
  points: Point[];
  values: Record<string, number>;
  text: string;
}

function numbers(value: unknown): number[] {
  return Array.isArray(value) ? value.map(Number) : [];
}

/** The SOP instance UID and frame number of a wadors image id. */
export function instanceOf(imageId: string): { sop: string; frame: number } | null {
  const match = /\/instances\/([0-9.]+)\/frames\/(\d+)/.exec(imageId);
  return match ? { sop: match[1], frame: Number(match[2]) } : null;
}

export class ShapesPanel {
  readonly root: HTMLElement;
  readonly api: ShapesApi;
  tool: ShapeKind | null = null;
  /** Stored shape ids by annotation UID. */
  readonly stored = new Map<string, number>();
  private readonly list = h("ul", { class: "shape-list", "data-testid": "shapes-list" });
  private readonly status = h("p", { class: "shape-status", "data-testid": "shapes-status" });
  private readonly label = h("input", { "data-testid": "shapes-label", placeholder: "Label", "aria-label": "Shape label" });
  private readonly buttons = h("div", { class: "shape-tools" });
  private readonly listeners: [string, EventListener][] = [];
  private readonly observer: MutationObserver;

  constructor(
    container: HTMLElement,
    readonly viewer: Viewer,
    client: ApiClient,
    readonly project: string,
    private readonly options: ShapesOptions = {},
  ) {
    this.api = new ShapesApi(client, project);
    for (const tool of PARENTS) if (!toolState.tools[tool.toolName]) addTool(tool);
    for (const groupId of viewer.toolGroupIds()) {
      const group = ToolGroupManager.getToolGroup(groupId);
      if (!group) continue;
      for (const tool of Object.values(SHAPE_TOOLS)) {
        if (!group.hasTool(tool.name)) group.addToolInstance(tool.name, tool.parent);
        group.setToolPassive(tool.name);
      }
    }
    for (const [kind, tool] of Object.entries(SHAPE_TOOLS) as [ShapeKind, ShapeTool][]) {
      const button = h("button", { type: "button", "data-shape-tool": kind }, tool.label);
      button.addEventListener("click", () => this.setTool(this.tool === kind ? null : kind));
      this.buttons.append(button);
    }
    const { study, series } = viewer.series;
    const exportLink = h(
      "a",
      { href: this.api.srUrl(study, series), download: `shapes-${series}.dcm`, "data-testid": "shapes-export-sr", class: "button" },
      "Export SR",
    );
    this.root = h(
      "section",
      { class: "shapes", "data-testid": "shapes", "data-status": "loading" },
      h("h3", {}, "Shapes"),
      this.buttons,
      h("div", { class: "shape-row" }, this.label, exportLink),
      this.status,
      this.list,
    );
    container.append(this.root);
    this.listen(ToolEnums.Events.ANNOTATION_COMPLETED, (event) => {
      const item = (event as CustomEvent<{ annotation: ToolTypes.Annotation }>).detail.annotation;
      if (item && KIND_OF[item.metadata?.toolName ?? ""] && !this.stored.has(item.annotationUID ?? "")) void this.save(item);
    });
    for (const type of [ToolEnums.Events.ANNOTATION_MODIFIED, ToolEnums.Events.ANNOTATION_REMOVED]) {
      this.listen(type, () => this.renderList());
    }
    // another tool took the primary button (the viewer's toolbar, the label editor): let go
    this.observer = new MutationObserver(() => {
      const active = viewer.root.dataset.tool ?? "";
      if (this.tool && active !== SHAPE_TOOLS[this.tool].name) this.release();
    });
    this.observer.observe(viewer.root, { attributes: true, attributeFilter: ["data-tool"] });
  }

  private listen(type: string, handler: EventListener): void {
    eventTarget.addEventListener(type, handler);
    this.listeners.push([type, handler]);
  }

  /** Makes a drawing tool the primary-button tool (null: back to the viewer's window/level). */
  setTool(kind: ShapeKind | null): void {
    if (!kind) {
      this.release();
      this.viewer.setTool("WindowLevel");
      return;
    }
    this.options.onActivate?.();
    this.tool = kind;
    this.viewer.setTool(SHAPE_TOOLS[kind].name);
    for (const groupId of this.viewer.toolGroupIds()) {
      const group = ToolGroupManager.getToolGroup(groupId);
      if (!group) continue;
      for (const tool of Object.values(SHAPE_TOOLS)) {
        if (tool.name === SHAPE_TOOLS[kind].name) group.setToolActive(tool.name, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Primary }] });
        else group.setToolPassive(tool.name);
      }
    }
    this.showTool();
  }

  private release(): void {
    if (!this.tool) return;
    for (const groupId of this.viewer.toolGroupIds()) {
      const group = ToolGroupManager.getToolGroup(groupId);
      for (const tool of Object.values(SHAPE_TOOLS)) group?.setToolPassive(tool.name);
    }
    this.tool = null;
    this.showTool();
  }

  private showTool(): void {
    for (const button of this.buttons.querySelectorAll<HTMLElement>("button")) button.classList.toggle("on", button.dataset.shapeTool === this.tool);
    this.root.dataset.tool = this.tool ?? "";
  }

  /** The shapes drawn on this viewer's series (from Cornerstone's annotation state). */
  entries(): ShapeEntry[] {
    const ours = new Set(this.viewer.series.imageIds);
    const out: ShapeEntry[] = [];
    for (const item of annotation.state.getAllAnnotations()) {
      const kind = KIND_OF[item.metadata?.toolName ?? ""];
      if (!kind || !ours.has(item.metadata?.referencedImageId ?? "")) continue;
      const uid = item.annotationUID ?? "";
      const stats = Object.values((item.data as { cachedStats?: Record<string, Record<string, unknown>> }).cachedStats ?? {})[0] ?? {};
      const values: Record<string, number> = {};
      for (const key of ["length", "angle", "area", "mean", "value"]) {
        const value = stats[key];
        if (typeof value === "number" && Number.isFinite(value)) values[key] = value;
      }
      let points: Point[] = [];
      try {
        points = fromCornerstone(kind, item);
      } catch {
        /* still being drawn */
      }
      const label = String((item.data as { label?: string }).label ?? "");
      out.push({ uid, kind, id: this.stored.get(uid) ?? null, label, points, values, text: describe(kind, values, stats) });
    }
    return out;
  }

  /** How many annotations of the shape tools Cornerstone's annotation state holds. */
  annotationCount(): number {
    return annotation.state.getAllAnnotations().filter((item) => KIND_OF[item.metadata?.toolName ?? ""]).length;
  }

  renderList(): void {
    const entries = this.entries();
    this.root.dataset.count = String(entries.length);
    this.list.replaceChildren(
      ...entries.map((entry) => {
        const item = h(
          "li",
          { "data-kind": entry.kind, "data-uid": entry.uid, "data-shape": entry.id ?? "", "data-values": JSON.stringify(entry.values) },
          `${SHAPE_TOOLS[entry.kind].label}${entry.label ? ` “${entry.label}”` : ""}: `,
          h("span", { class: "shape-value", "data-testid": "shape-value" }, entry.text),
          entry.id ? "" : h("span", { class: "muted" }, " (not saved)"),
        );
        return item;
      }),
    );
  }

  /** Posts a completed drawing; the saved annotation is locked (shapes are kept as drawn). */
  async save(item: ToolTypes.Annotation): Promise<ShapeView | null> {
    const kind = KIND_OF[item.metadata?.toolName ?? ""];
    const uid = item.annotationUID ?? "";
    const where = instanceOf(item.metadata?.referencedImageId ?? "");
    const label = this.label.value.trim();
    (item.data as { label?: string }).label = label;
    if (!where) {
      this.setStatus("error", "Shapes are kept on the images of the stack view: draw them there.");
      return null;
    }
    let points = fromCornerstone(kind, item);
    if (points.length > MAX_POINTS) {
      const step = Math.ceil(points.length / MAX_POINTS);
      points = points.filter((_, index) => index % step === 0);
    }
    this.setStatus("saving", `Saving the ${kind}…`);
    try {
      const { study, series } = this.viewer.series;
      const shape = await this.api.add({ study, series, sop: where.sop, kind, points, label });
      this.stored.set(uid, shape.id);
      annotation.locking.setAnnotationLocked(uid, true);
      this.setStatus("saved", `Saved ${kind} #${shape.id}`);
      this.renderList();
      return shape;
    } catch (error) {
      this.setStatus("error", `Not saved: ${String(error instanceof Error ? error.message : error)}`);
      this.renderList();
      return null;
    }
  }

  /** Draws the series' stored shapes on the stack view. */
  async load(): Promise<void> {
    const { study, series, imageIds } = this.viewer.series;
    const stack = this.viewer.cells.find((c) => c.kind === "stack");
    const shapes = await this.api.list(study, series);
    const bySop = new Map<string, string>();
    for (const imageId of imageIds) {
      const where = instanceOf(imageId);
      if (where && where.frame === 1) bySop.set(where.sop, imageId);
    }
    let drawn = 0;
    const failed: string[] = [];
    for (const shape of shapes) {
      const imageId = bySop.get(shape.sop);
      if (!imageId || !stack) {
        failed.push(`#${shape.id}`);
        continue;
      }
      try {
        const uid = `carina-shape-${this.viewer.id}-${shape.id}`;
        this.hydrate(stack.id, imageId, shape, uid);
        this.stored.set(uid, shape.id);
        annotation.locking.setAnnotationLocked(uid, true);
        drawn++;
      } catch (error) {
        failed.push(`#${shape.id} (${String(error)})`);
      }
    }
    this.viewer.renderAll();
    this.root.dataset.loaded = String(drawn);
    this.setStatus(failed.length ? "error" : "ready", `${drawn} stored shape(s) drawn${failed.length ? `; not drawn: ${failed.join(", ")}` : ""}`);
    this.renderList();
  }

  private hydrate(viewportId: string, imageId: string, shape: ShapeView, uid: string): void {
    const plane = metaData.get("imagePlaneModule", imageId) as { rowCosines?: number[]; columnCosines?: number[]; frameOfReferenceUID?: string } | undefined;
    const rowCosines = numbers(plane?.rowCosines) as Point;
    const columnCosines = numbers(plane?.columnCosines) as Point;
    const points = toCornerstone(shape.kind, shape.points as Point[], rowCosines, columnCosines) as Types.Point3[];
    const tool = SHAPE_TOOLS[shape.kind];
    const group = ToolGroupManager.getToolGroupForViewport(viewportId, this.viewer.engine.id);
    const toolInstance = group?.getToolInstance(tool.name);
    if (shape.kind === "polygon") {
      // the freehand tool has no hydrate: its annotation is the closed polyline
      annotation.state.addAnnotation(
        {
          annotationUID: uid,
          highlighted: false,
          invalidated: true,
          isLocked: false,
          isVisible: true,
          metadata: { toolName: tool.name, FrameOfReferenceUID: plane?.frameOfReferenceUID ?? shape.frame_of_reference, referencedImageId: imageId },
          data: {
            contour: { polyline: points, closed: true },
            handles: { points: [], activeHandleIndex: null, textBox: { hasMoved: false, worldPosition: [0, 0, 0] } },
            label: shape.label,
            cachedStats: {},
          },
        } as unknown as ToolTypes.Annotation,
        this.viewer.engine.getViewport(viewportId)!.element,
      );
      return;
    }
    const parent = PARENTS.find((p) => p.toolName === tool.parent) as unknown as {
      hydrate: (viewportId: string, points: Types.Point3[], options: Record<string, unknown>) => void;
    };
    parent.hydrate(viewportId, points, { annotationUID: uid, referencedImageId: imageId, toolInstance });
    const made = annotation.state.getAnnotation(uid);
    if (!made) throw new Error("not drawn");
    (made.data as { label?: string }).label = shape.label;
    made.invalidated = true;
  }

  private setStatus(state: string, text: string): void {
    this.root.dataset.status = state;
    this.status.textContent = text;
  }

  destroy(): void {
    if (window.carinaShapes === this) window.carinaShapes = undefined;
    this.observer.disconnect();
    for (const [type, handler] of this.listeners) eventTarget.removeEventListener(type, handler);
  }
}

function describe(kind: ShapeKind, values: Record<string, number>, stats: Record<string, unknown>): string {
  const f = (v: number | undefined, digits = 2) => (v === undefined ? "?" : v.toFixed(digits));
  if (kind === "line") return `${f(values.length)} ${String(stats.unit ?? "mm")}`;
  if (kind === "angle") return `${f(values.angle, 1)}°`;
  if (kind === "point") return values.value !== undefined ? `${f(values.value, 0)} ${String(stats.modalityUnit ?? "")}` : "point";
  return `area ${f(values.area)} ${String(stats.areaUnit ?? "mm²")}`;
}

/** Mounts the shapes panel in the viewer's side bar and draws the series' stored shapes. */
export function mountShapesPanel(
  container: HTMLElement,
  viewer: Viewer,
  client: ApiClient,
  project: string,
  options: ShapesOptions = {},
): ShapesPanel {
  const panel = new ShapesPanel(container, viewer, client, project, options);
  window.carinaShapes = panel;
  panel.load().catch((error: unknown) => {
    panel.root.dataset.status = "error";
    panel.root.append(h("p", { class: "error" }, String(error)));
  });
  return panel;
}
