// Label editing in the viewer: a segmentation of the open series (chosen or created in a project
// label set), its head version loaded as a Cornerstone labelmap, AI pre-labels imported from a
// DICOM SEG in the archive, Cornerstone's brush, eraser, threshold brush and scissors, undo/redo,
// and saving as a new version whose parent is the version the edit started from. A save the
// server refuses as stale (409) is shown with the head version and never retried over it.
import "./annotate.css";
import { cache, eventTarget, utilities as coreUtilities, type Types } from "@cornerstonejs/core";
import {
  BrushTool,
  PlanarFreehandROITool,
  CircleScissorsTool,
  Enums as ToolEnums,
  RectangleScissorsTool,
  SphereScissorsTool,
  ToolGroupManager,
  addTool,
  annotation as toolAnnotation,
  segmentation,
  state as toolState,
} from "@cornerstonejs/tools";
import type { ApiClient } from "../api/client";
import { VERSION_SAVED } from "../events";
import { h } from "../dom";
import { applySegmentation, listSegmentations, LoadedSegmentation, registerLabelmap, type RawLabelmap, type SegSummary } from "../viewer/segmentations";
import type { Viewer } from "../viewer/viewer";
import { AnnotationApi, ConflictError, type LabelDef, type SegmentationView, type VersionView } from "./api";
import { floodFill, interpolateMasks, interpolationGaps, islandsToRemove, polygonMask } from "./ops";
import { blockIndices, LabelClickTool, LabelImages, SeriesGrid } from "./tools";

/** The editing tools: tool instance name -> Cornerstone tool, its configuration and its label. */
export const EDIT_TOOLS: Record<string, { tool: string; label: string; configuration: Record<string, unknown> }> = {
  Brush: { tool: BrushTool.toolName, label: "Brush", configuration: { activeStrategy: "FILL_INSIDE_CIRCLE" } },
  Eraser: { tool: BrushTool.toolName, label: "Eraser", configuration: { activeStrategy: "ERASE_INSIDE_CIRCLE" } },
  SphereBrush: { tool: BrushTool.toolName, label: "Brush 3D", configuration: { activeStrategy: "FILL_INSIDE_SPHERE" } },
  SphereEraser: { tool: BrushTool.toolName, label: "Eraser 3D", configuration: { activeStrategy: "ERASE_INSIDE_SPHERE" } },
  ThresholdBrush: { tool: BrushTool.toolName, label: "Threshold", configuration: { activeStrategy: "THRESHOLD_INSIDE_CIRCLE" } },
  ThresholdSphere: { tool: BrushTool.toolName, label: "Threshold 3D", configuration: { activeStrategy: "THRESHOLD_INSIDE_SPHERE" } },
  RectangleScissors: { tool: RectangleScissorsTool.toolName, label: "Rectangle fill", configuration: {} },
  CircleScissors: { tool: CircleScissorsTool.toolName, label: "Circle fill", configuration: {} },
  SphereScissors: { tool: SphereScissorsTool.toolName, label: "Sphere fill", configuration: {} },
  // a closed outline drawn with Cornerstone's freehand ROI tool, filled on the slice, then removed
  PolygonFill: {
    tool: PlanarFreehandROITool.toolName,
    label: "Polygon fill",
    configuration: { calculateStats: false, allowOpenContours: false, smoothing: { smoothOnAdd: false, smoothOnEdit: false } },
  },
  BucketFill: { tool: LabelClickTool.toolName, label: "Bucket fill", configuration: {} },
  Grow: { tool: LabelClickTool.toolName, label: "Grow", configuration: {} },
  // grow-from-seeds: clicks collect inside and outside seeds, "Grow from seeds" sends them
  SeedInside: { tool: LabelClickTool.toolName, label: "Seed inside", configuration: {} },
  SeedOutside: { tool: LabelClickTool.toolName, label: "Seed outside", configuration: {} },
};
const THRESHOLD_TOOLS = ["ThresholdBrush", "ThresholdSphere"];
const BRUSHES = Object.keys(EDIT_TOOLS).filter((name) => EDIT_TOOLS[name].tool === BrushTool.toolName);
const PALETTE: [number, number, number][] = [
  [255, 80, 80],
  [80, 220, 80],
  [80, 140, 255],
  [255, 200, 0],
  [220, 80, 255],
  [0, 220, 220],
];

/** The parts of a freehand ROI annotation the polygon fill reads. */
interface PolygonAnnotation {
  annotationUID?: string;
  metadata?: { toolName?: string; referencedImageId?: string };
  data?: { contour?: { polyline?: Types.Point3[] } };
}

declare global {
  interface Window {
    /** The open editing panel (automation hook for the browser tests). */
    carinaAnnotation?: AnnotationPanel;
  }
}

let toolsAdded = false;

function addEditTools(): void {
  if (toolsAdded) return;
  for (const tool of [BrushTool, RectangleScissorsTool, CircleScissorsTool, SphereScissorsTool, PlanarFreehandROITool, LabelClickTool]) {
    if (!toolState.tools[tool.toolName]) addTool(tool);
  }
  toolsAdded = true;
}

export interface AnnotateOptions {
  /** Seconds between autosaves while there are unsaved edits; 0: off. */
  autosaveSeconds?: number;
  /** Called with the open segmentation's id (or null), e.g. to keep it in the page's URL. */
  onOpen?: (segmentation: number | null) => void;
  /** A segmentation to open at once. */
  open?: number | null;
}

/** The editing panel of one viewer. */
export class AnnotationPanel {
  readonly root: HTMLElement;
  readonly api: AnnotationApi;
  seg: SegmentationView | null = null;
  /** The version the edits started from (the parent of the next save). */
  version: VersionView | null = null;
  loaded: LoadedSegmentation | null = null;
  dirty = false;
  saving = false;
  tool: string | null = null;
  threshold: [number, number] = [-100, 300];
  brushSize = 8;
  activeLabel = 1;
  readonly used = new Set<string>();
  /** Bucket fill in 3D (6-connected) rather than on the slice (4-connected). */
  bucket3D = false;
  /** Connectivity of the islands' components (3D). */
  connectivity: 6 | 26 = 26;
  /** "Remove islands" drops components smaller than this (voxels). */
  islandSize = 100;
  /** What the last of the panel's own tools did (automation hook for the browser tests). */
  lastEdit: Record<string, unknown> | null = null;
  private grid: SeriesGrid | null = null;
  private images: LabelImages | null = null;
  /** True while the panel's own tools write or undo/redo restores: those data-modified events
   * are counted there, not as edits of the active Cornerstone tool. */
  private writing = false;
  private loads = 0;
  /** Edits made since the page opened: a save marks the map clean only if none came in meanwhile. */
  edits = 0;
  private keys: ((event: KeyboardEvent) => void) | null = null;
  /** The labelmap images being edited, one per slice in the series' order. */
  private labelImages: string[] = [];
  private timer: number | null = null;
  private readonly listeners: [string, EventListener][] = [];
  private readonly segSelect = h("select", { "data-testid": "annot-seg", "aria-label": "Segmentation" });
  private readonly labelSetSelect = h("select", { "data-testid": "annot-labelset", "aria-label": "Label set" });
  private readonly nameInput = h("input", { "data-testid": "annot-name", placeholder: "Name", "aria-label": "Name" });
  private readonly editor = h("div", { class: "annot-editor", "data-testid": "annot-editor", hidden: true });
  private readonly status = h("p", { class: "annot-status", "data-testid": "annot-status" });
  private readonly seedCount = h("span", { "data-testid": "annot-seed-count", "data-inside": "0", "data-outside": "0" }, "0 inside, 0 outside");
  private seeds: { inside: number[][]; outside: number[][] } = { inside: [], outside: [] };
  private readonly conflict = h("div", { class: "annot-conflict error", "data-testid": "annot-conflict", hidden: true });
  private readonly history = h("ol", { class: "annot-history", "data-testid": "annot-history" });
  private readonly labels = h("div", { class: "annot-labels", "data-testid": "annot-labels" });
  private readonly tools = h("div", { class: "annot-tools" });
  private readonly prelabels = h("select", { "data-testid": "annot-prelabel-seg", "aria-label": "AI pre-label" });
  private readonly model = h("input", { "data-testid": "annot-model", value: "", placeholder: "Model", "aria-label": "Model" });
  private readonly comment = h("input", { "data-testid": "annot-comment", placeholder: "Comment", "aria-label": "Comment" });
  private prelabelList: SegSummary[] = [];

  constructor(
    container: HTMLElement,
    readonly viewer: Viewer,
    client: ApiClient,
    readonly project: string,
    private readonly options: AnnotateOptions = {},
  ) {
    this.api = new AnnotationApi(client, project);
    addEditTools();
    for (const groupId of viewer.toolGroupIds()) {
      const group = ToolGroupManager.getToolGroup(groupId);
      if (!group) continue;
      for (const [name, def] of Object.entries(EDIT_TOOLS)) {
        if (group.hasTool(name)) continue;
        if (name === def.tool) group.addTool(name, def.configuration);
        else group.addToolInstance(name, def.tool, def.configuration);
      }
    }
    this.configureTools();
    this.root = h("section", { class: "annotate", "data-testid": "annotate", "data-status": "idle" }, h("h3", {}, "Annotate"));
    this.root.append(this.chooser(), this.status, this.editor);
    this.buildEditor();
    container.append(this.root);
    // the viewer's own tools take the primary button back from the editing tools
    viewer.root.querySelector(".toolbar .tools")?.addEventListener("click", () => this.setTool(null, false));
    this.listen(ToolEnums.Events.SEGMENTATION_DATA_MODIFIED, (event) => {
      const detail = (event as CustomEvent<{ segmentationId?: string }>).detail;
      // only edits count: loading and rendering a map signal modifications too
      if (this.writing || !this.loaded || !this.tool || detail?.segmentationId !== this.loaded.id) return;
      this.used.add(this.toolDescription(this.tool));
      this.edits++;
      this.setDirty(true);
    });
    this.listen(ToolEnums.Events.ANNOTATION_COMPLETED, (event) => {
      const item = (event as CustomEvent<{ annotation?: PolygonAnnotation }>).detail?.annotation;
      if (item?.metadata?.toolName === "PolygonFill") void this.run(async () => this.polygonFill(item));
    });
    LabelClickTool.handler = (name, world) => {
      if (name === "BucketFill") void this.run(() => this.bucketFill(world));
      else if (name === "Grow") void this.run(() => this.grow(world));
      else if (name === "SeedInside" || name === "SeedOutside") this.addSeed(name === "SeedInside", world);
    };
    this.setAutosave(options.autosaveSeconds ?? 0);
  }

  private listen(type: string, handler: EventListener): void {
    eventTarget.addEventListener(type, handler);
    this.listeners.push([type, handler]);
  }

  // -- choosing a segmentation ----------------------------------------------------------------------

  private chooser(): HTMLElement {
    const open = h("button", { type: "button", "data-testid": "annot-open" }, "Open");
    open.addEventListener("click", () => {
      const id = Number(this.segSelect.value);
      if (id) void this.run(() => this.open(id));
    });
    const create = h("button", { type: "button", "data-testid": "annot-create" }, "New");
    create.addEventListener("click", () => {
      const labelSet = this.labelSetSelect.value;
      if (!labelSet) return;
      void this.run(async () => {
        const { study, series } = this.viewer.series;
        const made = await this.api.createSegmentation(study, series, labelSet, this.nameInput.value.trim());
        await this.refreshList(made.id);
        await this.open(made.id);
      });
    });
    return h(
      "div",
      { class: "annot-chooser" },
      h("div", { class: "annot-row" }, this.segSelect, open),
      h("div", { class: "annot-row" }, this.labelSetSelect, this.nameInput, create),
    );
  }

  async refreshList(select?: number): Promise<void> {
    const { study, series } = this.viewer.series;
    const [segs, sets] = await Promise.all([this.api.segmentations(study, series), this.api.labelSets()]);
    this.segSelect.replaceChildren(
      h("option", { value: "" }, segs.length ? "Segmentation…" : "No segmentation yet"),
      ...segs.map((s) => h("option", { value: s.id }, `${s.name || "Segmentation"} (${s.label_set.name}) #${s.id}`)),
    );
    if (select) this.segSelect.value = String(select);
    this.labelSetSelect.replaceChildren(...sets.map((s) => h("option", { value: s.name }, `Label set: ${s.name}`)));
    this.prelabelList = await listSegmentations(this.project, study, series).catch(() => []);
    this.prelabels.replaceChildren(
      ...this.prelabelList.map((s) => h("option", { value: s.sop_instance_uid }, s.description || s.series)),
    );
  }

  /** Opens a segmentation and loads its head version (or an empty map when it has none). */
  async open(id: number): Promise<void> {
    const seg = await this.api.segmentation(id);
    if (seg.series !== this.viewer.series.series) {
      // e.g. a segmentation kept in the URL while another series of the study was opened
      this.options.onOpen?.(null);
      this.setStatus("idle", `Segmentation #${id} is of another series`);
      return;
    }
    this.seg = seg;
    this.segSelect.value = String(id);
    this.root.dataset.seg = String(id);
    this.options.onOpen?.(id);
    this.renderLabels(seg.label_set.labels);
    const head = seg.versions?.find((v) => v.id === seg.head) ?? null;
    await this.loadVersion(head);
    this.editor.hidden = false;
  }

  /** Loads a version as the labelmap being edited (null: an empty map); unsaved edits are dropped. */
  async loadVersion(version: VersionView | null): Promise<void> {
    const seg = this.seg;
    if (!seg) return;
    const { imageIds, rows, columns } = this.viewer.series;
    // 16-bit labelmap images when the label set or the map has values above 255, else 8-bit
    const wide = seg.label_set.labels.some((label) => label.value > 255);
    const size = imageIds.length * rows * columns;
    const labelmap: RawLabelmap = version
      ? await this.api.labelmap(seg.id, version.id)
      : { shape: [imageIds.length, rows, columns], values: wide ? new Uint16Array(size) : new Uint8Array(size) };
    if (labelmap.values instanceof Uint16Array && !wide) {
      const max = labelmap.values.reduce((m, v) => Math.max(m, v), 0);
      if (max <= 255) labelmap.values = Uint8Array.from(labelmap.values);
    } else if (labelmap.values instanceof Uint8Array && wide) {
      labelmap.values = Uint16Array.from(labelmap.values);
    }
    this.unload();
    this.setTool(null);
    const id = `${this.viewer.id}-annot-${seg.id}-${++this.loads}`;
    const { voxels, imageIds: labelImages } = registerLabelmap(this.viewer, id, labelmap);
    this.labelImages = labelImages;
    this.grid ??= new SeriesGrid(imageIds, rows, columns);
    this.images = new LabelImages(id, labelImages, [imageIds.length, rows, columns]);
    const labels = seg.label_set.labels.map((label, index) => ({
      value: label.value,
      name: label.name,
      color: label.color ?? PALETTE[index % PALETTE.length],
    }));
    const summary: SegSummary = { series: `annot-${seg.id}`, sop_instance_uid: "", description: seg.name, labels };
    this.loaded = new LoadedSegmentation(id, summary, voxels);
    this.viewer.addSegmentation(this.loaded);
    // every label of the set is a segment (names, locks), whether the map holds it yet or not
    const state = segmentation.state.getSegmentation(id);
    if (state) {
      for (const label of labels) {
        state.segments[label.value] ??= { segmentIndex: label.value, label: label.name, locked: false, cachedStats: {}, active: false };
      }
    }
    applySegmentation(this.viewer, this.loaded);
    for (const viewportId of this.viewer.overlayViewportIds()) segmentation.activeSegmentation.setActiveSegmentation(viewportId, id);
    segmentation.segmentIndex.setActiveSegmentIndex(id, this.activeLabel);
    for (const box of this.labels.querySelectorAll<HTMLInputElement>("input[data-lock]")) {
      segmentation.segmentLocking.setSegmentIndexLocked(id, Number(box.dataset.lock), box.checked);
    }
    this.version = version;
    this.used.clear();
    this.clearHistory();
    this.setDirty(false);
    this.conflict.hidden = true;
    this.root.dataset.version = version ? String(version.id) : "";
    this.root.dataset.number = version ? String(version.number) : "0";
    this.root.dataset.voxels = String(voxels);
    this.renderHistory();
    this.setStatus("ready", version ? `Version #${version.number} loaded (${voxels} labelled voxels)` : "Empty segmentation");
  }

  private unload(): void {
    if (!this.loaded) return;
    const index = this.viewer.segmentations.indexOf(this.loaded);
    if (index >= 0) this.viewer.segmentations.splice(index, 1);
    segmentation.removeSegmentation(this.loaded.id);
    this.loaded = null;
    this.images = null;
  }

  // -- the editor -----------------------------------------------------------------------------------

  private buildEditor(): void {
    const importButton = h("button", { type: "button", "data-testid": "annot-prelabel" }, "Load AI pre-label");
    importButton.addEventListener("click", () => void this.run(() => this.importPrelabel()));

    for (const [name, def] of Object.entries(EDIT_TOOLS)) {
      const button = h("button", { type: "button", "data-annot-tool": name }, def.label);
      button.addEventListener("click", () => this.setTool(this.tool === name ? null : name));
      this.tools.append(button);
    }
    const size = h("input", { type: "range", min: "1", max: "50", step: "1", value: String(this.brushSize), "data-testid": "annot-brush-size", "aria-label": "Brush radius (mm)" });
    const sizeLabel = h("span", {}, `${this.brushSize} mm`);
    size.addEventListener("input", () => {
      this.brushSize = Number(size.value);
      sizeLabel.textContent = `${size.value} mm`;
      this.configureTools();
    });
    const lower = h("input", { type: "number", value: String(this.threshold[0]), "data-testid": "annot-threshold-lower", "aria-label": "Lowest HU" });
    const upper = h("input", { type: "number", value: String(this.threshold[1]), "data-testid": "annot-threshold-upper", "aria-label": "Highest HU" });
    const onRange = () => {
      const [a, b] = [Number(lower.value), Number(upper.value)];
      if (!Number.isFinite(a) || !Number.isFinite(b)) return;
      this.threshold = [Math.min(a, b), Math.max(a, b)];
      this.configureTools();
    };
    lower.addEventListener("change", onRange);
    upper.addEventListener("change", onRange);

    const bucket3D = h("input", { type: "checkbox", "data-testid": "annot-bucket-3d" });
    bucket3D.addEventListener("change", () => (this.bucket3D = bucket3D.checked));
    const connectivity = h(
      "select",
      { "data-testid": "annot-connectivity", "aria-label": "Connectivity of islands" },
      h("option", { value: "26" }, "26-connected"),
      h("option", { value: "6" }, "6-connected"),
    );
    connectivity.addEventListener("change", () => (this.connectivity = connectivity.value === "6" ? 6 : 26));
    const islandSize = h("input", { type: "number", min: "1", value: String(this.islandSize), "data-testid": "annot-island-size", "aria-label": "Smallest island kept (voxels)" });
    islandSize.addEventListener("change", () => {
      const n = Math.round(Number(islandSize.value));
      if (Number.isFinite(n) && n > 0) this.islandSize = n;
    });
    const keepLargest = h("button", { type: "button", "data-testid": "annot-keep-largest" }, "Keep largest");
    keepLargest.addEventListener("click", () => void this.run(async () => this.removeIslands(null)));
    const removeIslands = h("button", { type: "button", "data-testid": "annot-remove-islands" }, "Remove islands");
    removeIslands.addEventListener("click", () => void this.run(async () => this.removeIslands(this.islandSize)));
    const growSeeds = h("button", { type: "button", "data-testid": "annot-grow-seeds" }, "Grow from seeds");
    growSeeds.addEventListener("click", () => void this.run(() => this.growFromSeeds()));
    const clearSeeds = h("button", { type: "button", "data-testid": "annot-clear-seeds" }, "Clear seeds");
    clearSeeds.addEventListener("click", () => this.clearSeeds());
    const interpolate = h("button", { type: "button", "data-testid": "annot-interpolate" }, "Interpolate slices");
    interpolate.addEventListener("click", () => void this.run(async () => this.interpolate()));

    const undo = h("button", { type: "button", "data-testid": "annot-undo" }, "Undo");
    const redo = h("button", { type: "button", "data-testid": "annot-redo" }, "Redo");
    undo.addEventListener("click", () => this.undo(false));
    redo.addEventListener("click", () => this.undo(true));
    // Ctrl+Z / Ctrl+Shift+Z (or Ctrl+Y) while editing, unless typing in a field
    this.keys = (event: KeyboardEvent) => {
      if (!this.loaded || !(event.ctrlKey || event.metaKey)) return;
      if (event.target instanceof HTMLInputElement || event.target instanceof HTMLTextAreaElement) return;
      const key = event.key.toLowerCase();
      if (key !== "z" && key !== "y") return;
      event.preventDefault();
      this.undo(key === "y" || event.shiftKey);
    };
    document.addEventListener("keydown", this.keys);

    const save = h("button", { type: "button", "data-testid": "annot-save" }, "Save");
    save.addEventListener("click", () => void this.save());
    const autosave = h(
      "select",
      { "data-testid": "annot-autosave", "aria-label": "Autosave" },
      ...[...new Set([0, 30, 60, 120, 300, this.options.autosaveSeconds ?? 0])]
        .sort((a, b) => a - b)
        .map((s) => h("option", { value: s }, s ? `Autosave every ${s} s` : "Autosave off")),
    );
    autosave.value = String(this.options.autosaveSeconds ?? 0);
    autosave.addEventListener("change", () => this.setAutosave(Number(autosave.value)));

    this.editor.append(
      this.conflict,
      h("div", { class: "annot-row" }, this.prelabels, this.model, importButton),
      h("strong", {}, "Labels"),
      this.labels,
      h("strong", {}, "Tools"),
      this.tools,
      h("label", {}, "Radius ", size, sizeLabel),
      h("label", {}, "Threshold HU ", lower, "…", upper),
      h("label", {}, bucket3D, " Bucket fill in 3D"),
      h("div", { class: "annot-row" }, growSeeds, clearSeeds, this.seedCount),
      h("strong", {}, "Active label"),
      h("div", { class: "annot-row" }, keepLargest, removeIslands, h("label", {}, "smaller than ", islandSize, " voxels")),
      h("div", { class: "annot-row" }, connectivity, interpolate),
      h("div", { class: "annot-row" }, undo, redo),
      h("div", { class: "annot-row" }, this.comment, save),
      autosave,
      h("strong", {}, "History"),
      this.history,
    );
  }

  private renderLabels(labels: LabelDef[]): void {
    if (!labels.some((l) => l.value === this.activeLabel)) this.activeLabel = labels[0]?.value ?? 1;
    this.labels.replaceChildren(
      ...labels.map((label, index) => {
        const color = label.color ?? PALETTE[index % PALETTE.length];
        const radio = h("input", { type: "radio", name: `annot-label-${this.viewer.id}`, value: label.value, checked: label.value === this.activeLabel, "data-testid": "annot-label" });
        radio.addEventListener("change", () => {
          this.activeLabel = label.value;
          if (this.loaded) segmentation.segmentIndex.setActiveSegmentIndex(this.loaded.id, label.value);
          this.root.dataset.label = String(label.value);
        });
        const lock = h("input", { type: "checkbox", "data-lock": label.value, "data-testid": "annot-lock", title: "Lock: edits leave this label alone" });
        lock.addEventListener("change", () => {
          if (this.loaded) segmentation.segmentLocking.setSegmentIndexLocked(this.loaded.id, label.value, lock.checked);
        });
        return h(
          "div",
          { class: "annot-label", "data-label": label.value },
          h("label", {}, radio, h("span", { class: "swatch", style: `background: rgb(${color.join(",")})` }), ` ${label.value} ${label.name}`),
          h("label", { class: "muted" }, lock, "lock"),
        );
      }),
    );
    this.root.dataset.label = String(this.activeLabel);
  }

  private renderHistory(): void {
    const versions = [...(this.seg?.versions ?? [])].reverse();
    this.history.replaceChildren(
      ...versions.map((v) => {
        const when = new Date(v.created_at).toLocaleString();
        const what = [v.tool && `tool ${v.tool}`, v.model && `model ${v.model}${v.model_version ? ` ${v.model_version}` : ""}`].filter(Boolean).join(", ");
        const load = h("button", { type: "button", class: "link" }, "load");
        load.addEventListener("click", () => void this.run(() => this.loadVersion(v)));
        return h(
          "li",
          { "data-version": v.id, "data-number": v.number, "data-author": v.author, class: v.id === this.version?.id ? "current" : "" },
          h("strong", {}, `#${v.number}`),
          ` ${v.author}, ${when}${what ? `, ${what}` : ""}${v.comment ? ` — ${v.comment}` : ""} `,
          load,
        );
      }),
    );
  }

  private toolDescription(name: string): string {
    return THRESHOLD_TOOLS.includes(name) ? `${name}[${this.threshold[0]},${this.threshold[1]}]` : name;
  }

  // -- the panel's own tools ------------------------------------------------------------------------

  /**
   * Sets `value` at the voxels as one undoable edit recorded as `tool`, leaving voxels of locked
   * labels (and those `keep` protects) alone; refused when the label being edited is locked.
   */
  private commit(tool: string, indices: Iterable<number>, value: number, label = value, keep: (old: number) => boolean = () => false): number {
    const images = this.images;
    if (!images || !this.loaded) throw new Error("no segmentation loaded");
    const locked = new Set(segmentation.segmentLocking.getLockedSegmentIndices(this.loaded.id));
    if (locked.has(label)) throw new Error(`label ${label} is locked`);
    this.writing = true;
    let changed = 0;
    try {
      changed = images.write(indices, value, (old) => locked.has(old) || keep(old));
    } finally {
      this.writing = false;
    }
    if (changed) {
      this.used.add(tool);
      this.edits++;
      this.setDirty(true);
      this.viewer.renderAll();
    }
    this.setStatus("ready", `${tool}: ${changed} voxels changed`);
    return changed;
  }

  /** Fills the inside of a closed outline drawn on a slice with the active label. */
  private polygonFill(item: PolygonAnnotation): void {
    if (item.annotationUID) toolAnnotation.state.removeAnnotation(item.annotationUID);
    this.viewer.renderAll();
    const grid = this.grid;
    const polyline = item.data?.contour?.polyline ?? [];
    if (!grid || polyline.length < 3) return;
    const reference = item.metadata?.referencedImageId;
    const k = reference ? grid.imageIds.indexOf(reference) : grid.sliceAt(polyline[0]);
    if (k < 0 || polyline.some((p) => grid.sliceAt(p) !== k)) throw new Error("polygon fill works on the slices of the series (its acquisition plane)");
    const points = polyline.map((p) => grid.imageCoords(k, p));
    const [, rows, columns] = grid.dims;
    const mask = polygonMask(rows, columns, points);
    const indices: number[] = [];
    for (let i = 0; i < mask.length; i++) if (mask[i]) indices.push(k * rows * columns + i);
    const changed = this.commit("PolygonFill", indices, this.activeLabel);
    this.lastEdit = { tool: "PolygonFill", k, points, inside: indices.length, changed };
  }

  /** Fills the connected region of the clicked voxel whose HU is within the threshold range. */
  private async bucketFill(world: Types.Point3): Promise<void> {
    const grid = this.grid;
    const seed = grid?.voxelAt(world);
    if (!grid || !seed) return;
    const [lower, upper] = this.threshold;
    const threeD = this.bucket3D;
    const ks = threeD ? grid.imageIds.map((_, k) => k) : [seed.k];
    const hu = await grid.volumeHu(ks);
    const plane = grid.dims[1] * grid.dims[2];
    const inside = (index: number) => {
      const k = Math.floor(index / plane);
      const value = hu.get(k)?.[index - k * plane];
      return value !== undefined && value >= lower && value <= upper;
    };
    const region = floodFill(grid.dims, seed.index, inside, threeD);
    if (!region.length) throw new Error(`the clicked voxel is outside ${lower}…${upper} HU`);
    const tool = `BucketFill${threeD ? "3D" : ""}[${lower},${upper}]`;
    const changed = this.commit(tool, region, this.activeLabel);
    this.lastEdit = { tool, seed: [seed.k, seed.row, seed.column], region: region.length, changed };
  }

  /** Adds the server's click region growing from the clicked point to the active label. */
  private async grow(world: Types.Point3): Promise<void> {
    const grid = this.grid;
    if (!grid) return;
    const { study, series } = this.viewer.series;
    const points = [Array.from(world)];
    this.setStatus("loading", "Growing…");
    const grown = await this.api.grow(study, series, points);
    const changed = this.commit("grow", blockIndices(grown, grid.dims), this.activeLabel);
    this.lastEdit = { tool: "grow", points, grown: grown.voxels, changed };
  }

  /** Adds an inside (foreground) or outside (background) seed for grow-from-seeds. */
  private addSeed(inside: boolean, world: Types.Point3): void {
    (inside ? this.seeds.inside : this.seeds.outside).push(Array.from(world));
    this.showSeeds();
  }

  private clearSeeds(): void {
    this.seeds = { inside: [], outside: [] };
    this.showSeeds();
  }

  private showSeeds(): void {
    const { inside, outside } = this.seeds;
    this.seedCount.textContent = `${inside.length} inside, ${outside.length} outside`;
    this.seedCount.dataset.inside = String(inside.length);
    this.seedCount.dataset.outside = String(outside.length);
  }

  /** Grows the seeds on the server (marker-controlled watershed) into the active label. */
  private async growFromSeeds(): Promise<void> {
    const grid = this.grid;
    if (!grid) return;
    const { inside, outside } = this.seeds;
    if (!inside.length || !outside.length) throw new Error("place at least one inside and one outside seed");
    const { study, series } = this.viewer.series;
    this.setStatus("loading", "Growing from seeds…");
    const grown = await this.api.grow(study, series, inside, "seeds", outside);
    const changed = this.commit("GrowSeeds", blockIndices(grown, grid.dims), this.activeLabel);
    this.lastEdit = { tool: "GrowSeeds", points: inside, background: outside, grown: grown.voxels, changed };
    this.clearSeeds();
  }

  /** Removes the active label's 3D components smaller than `minSize` voxels (null: all but the largest). */
  removeIslands(minSize: number | null): void {
    const grid = this.grid;
    const images = this.images;
    if (!grid || !images) return;
    const label = this.activeLabel;
    const drop = islandsToRemove(images.values(), grid.dims, label, this.connectivity, minSize);
    const tool = minSize === null ? `KeepLargest[${this.connectivity}]` : `RemoveIslands[${this.connectivity},<${minSize}]`;
    const changed = this.commit(tool, drop, 0, label);
    this.lastEdit = { tool, changed };
  }

  /** Fills the empty slices between slices holding the active label by shape-based interpolation. */
  interpolate(): void {
    const grid = this.grid;
    const images = this.images;
    if (!grid || !images) return;
    const label = this.activeLabel;
    const [, rows, columns] = grid.dims;
    const plane = rows * columns;
    const gaps = interpolationGaps(images.values(), grid.dims, label);
    const indices: number[] = [];
    for (const [k1, k2] of gaps) {
      const key = (k: number) => images.slice(k).map((v) => (v === label ? 1 : 0));
      interpolateMasks(key(k1), key(k2), rows, columns, k2 - k1 - 1).forEach((mask, step) => {
        const base = (k1 + 1 + step) * plane;
        for (let i = 0; i < plane; i++) if (mask[i]) indices.push(base + i);
      });
    }
    if (!gaps.length) throw new Error(`label ${label} has no empty slices between labelled ones`);
    // only unlabelled voxels: the interpolation never takes voxels from other labels
    const changed = this.commit("Interpolate", indices, label, label, (old) => old !== 0);
    this.lastEdit = { tool: "Interpolate", gaps, changed };
  }

  private configureTools(): void {
    for (const groupId of this.viewer.toolGroupIds()) {
      const group = ToolGroupManager.getToolGroup(groupId);
      if (!group) continue;
      for (const name of BRUSHES) group.setToolConfiguration(name, { brushSize: this.brushSize });
      for (const name of THRESHOLD_TOOLS) {
        group.setToolConfiguration(name, { threshold: { range: [...this.threshold], isDynamic: false, dynamicRadius: 0 } });
      }
    }
  }

  /** Makes an editing tool the primary-button tool (null: back to the viewer's window/level). */
  setTool(name: string | null, restoreViewerTool = true): void {
    if (name && !this.loaded) return;
    this.tool = name;
    if (name) this.viewer.setTool(name);
    for (const groupId of this.viewer.toolGroupIds()) {
      const group = ToolGroupManager.getToolGroup(groupId);
      if (!group) continue;
      for (const other of Object.keys(EDIT_TOOLS)) {
        if (other === name) group.setToolActive(other, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Primary }] });
        else group.setToolDisabled(other);
      }
    }
    if (!name && restoreViewerTool && Object.keys(EDIT_TOOLS).includes(this.viewer.activeTool)) this.viewer.setTool("WindowLevel");
    for (const button of this.tools.querySelectorAll<HTMLElement>("button")) button.classList.toggle("on", button.dataset.annotTool === name);
    this.root.dataset.tool = name ?? "";
  }

  /** Undoes (or redoes) the last edit of Cornerstone's history. */
  undo(redo: boolean): void {
    const memo = coreUtilities.HistoryMemo.DefaultHistoryMemo;
    if (redo ? !memo.canRedo : !memo.canUndo) return;
    // restoring signals data modifications: they are no edit of the active tool
    this.writing = true;
    try {
      if (redo) memo.redo();
      else memo.undo();
    } finally {
      this.writing = false;
    }
    this.edits++;
    this.setDirty(true);
    this.viewer.renderAll();
  }

  private clearHistory(): void {
    const memo = coreUtilities.HistoryMemo.DefaultHistoryMemo;
    const size = memo.size;
    memo.size = 0;
    memo.size = size;
  }

  // -- pre-labels, saving -----------------------------------------------------------------------------

  /** Imports the chosen DICOM SEG of the series (fetched by WADO-RS) as a new version. */
  async importPrelabel(): Promise<void> {
    const seg = this.seg;
    const chosen = this.prelabelList.find((s) => s.sop_instance_uid === this.prelabels.value);
    if (!seg || !chosen) throw new Error("no DICOM SEG of this series to import");
    if (this.dirty) throw new Error("save or discard the edits first: the pre-label becomes a new version");
    this.setStatus("loading", `Importing ${chosen.description || chosen.series}…`);
    const data = await this.api.instance(this.viewer.series.study, chosen.series, chosen.sop_instance_uid);
    const model = this.model.value.trim() || chosen.description || "DICOM SEG";
    const parent = this.version?.id ?? null;
    try {
      await this.api.importSeg(seg.id, data, { parent, model, comment: `pre-label from SEG ${chosen.series}` });
    } catch (error) {
      if (error instanceof ConflictError) return this.showConflict(error);
      throw error;
    }
    await this.open(seg.id);
  }

  /** The labelled voxels of the edited label map, per label value. */
  counts(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const v of this.labelmap().values) if (v) counts[v] = (counts[v] ?? 0) + 1;
    return counts;
  }

  /** The edited label map (slices, rows, columns) as it is on the wire. */
  labelmap(): RawLabelmap {
    if (!this.loaded) throw new Error("no segmentation loaded");
    const { rows, columns } = this.viewer.series;
    const plane = rows * columns;
    const imageIds = this.labelImages;
    const first = imageIds.length ? cache.getImage(imageIds[0]) : undefined;
    const wide = (first?.voxelManager ? first.voxelManager.getScalarData() : first?.getPixelData()) instanceof Uint16Array;
    const values = wide ? new Uint16Array(imageIds.length * plane) : new Uint8Array(imageIds.length * plane);
    imageIds.forEach((imageId, k) => {
      const image = cache.getImage(imageId);
      if (!image) throw new Error(`labelmap image ${imageId} is not in the cache`);
      const data = image.voxelManager ? (image.voxelManager.getScalarData() as ArrayLike<number>) : image.getPixelData();
      values.set(data as ArrayLike<number>, k * plane);
    });
    return { shape: [imageIds.length, rows, columns], values };
  }

  /** Saves the edits as a new version on top of the loaded one; a stale parent shows the conflict. */
  async save(): Promise<VersionView | null> {
    const seg = this.seg;
    if (!seg || !this.loaded || this.saving) return null;
    this.saving = true;
    this.setStatus("saving", "Saving…");
    try {
      const labelmap = this.labelmap();
      const edits = this.edits;
      const used = [...this.used];
      const tool = used.join(",").slice(0, 128) || "manual";
      const saved = await this.api.saveVersion(seg.id, labelmap, { parent: this.version?.id ?? null, tool, comment: this.comment.value.trim() });
      this.seg = await this.api.segmentation(seg.id);
      this.version = saved;
      // edits made while the request was on its way stay unsaved (and their tools listed)
      const newer = this.edits !== edits;
      for (const name of used) if (!newer) this.used.delete(name);
      this.comment.value = "";
      this.setDirty(newer);
      let voxels = 0;
      for (const v of labelmap.values) if (v) voxels++;
      this.root.dataset.version = String(saved.id);
      this.root.dataset.number = String(saved.number);
      this.root.dataset.voxels = String(voxels);
      this.renderHistory();
      this.setStatus("saved", `Saved as version #${saved.number}`);
      document.dispatchEvent(new CustomEvent(VERSION_SAVED, { detail: { segmentation: seg.id, version: saved.id } }));
      return saved;
    } catch (error) {
      if (error instanceof ConflictError) await this.showConflict(error);
      else this.setStatus("error", `Not saved: ${String(error)}`);
      return null;
    } finally {
      this.saving = false;
    }
  }

  private async showConflict(error: ConflictError): Promise<void> {
    const seg = this.seg;
    let head: VersionView | undefined;
    if (seg) {
      this.seg = await this.api.segmentation(seg.id);
      head = this.seg.versions?.find((v) => v.id === (error.head ?? this.seg?.head));
      this.renderHistory();
    }
    const headText = head ? `version #${head.number} (by ${head.author}, ${new Date(head.created_at).toLocaleString()})` : `version id ${error.head ?? "?"}`;
    const from = this.version ? `version #${this.version.number}` : "an empty segmentation";
    const load = h("button", { type: "button", "data-testid": "annot-load-head" }, "Load head");
    load.addEventListener("click", () => void this.run(() => this.loadVersion(head ?? null)));
    this.conflict.replaceChildren(
      h("p", {}, `Not saved: the segmentation's head is now ${headText}, saved after ${from} that your edits started from. Nothing was overwritten; your edits are still here, unsaved. Load the head version to continue from it (this discards your edits).`),
      load,
    );
    this.conflict.dataset.head = String(head?.id ?? error.head ?? "");
    this.conflict.dataset.headNumber = String(head?.number ?? "");
    this.conflict.hidden = false;
    this.setStatus("conflict", `Conflict: head is ${headText}`);
  }

  private setAutosave(seconds: number): void {
    if (this.timer !== null) window.clearInterval(this.timer);
    this.timer = null;
    if (seconds > 0) {
      this.timer = window.setInterval(() => {
        if (this.dirty && !this.saving && this.conflict.hidden) void this.save();
      }, seconds * 1000);
    }
    this.root.dataset.autosave = String(seconds);
  }

  private setDirty(dirty: boolean): void {
    this.dirty = dirty;
    this.root.dataset.dirty = dirty ? "1" : "0";
  }

  private setStatus(state: string, text: string): void {
    this.root.dataset.status = state;
    this.status.textContent = text;
  }

  private async run(step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (error) {
      this.setStatus("error", String(error instanceof Error ? error.message : error));
    }
  }

  destroy(): void {
    if (window.carinaAnnotation === this) window.carinaAnnotation = undefined;
    if (this.keys) document.removeEventListener("keydown", this.keys);
    if (this.timer !== null) window.clearInterval(this.timer);
    for (const [type, handler] of this.listeners) eventTarget.removeEventListener(type, handler);
    LabelClickTool.handler = null;
  }
}

/** Mounts the editing panel in the viewer's side bar (the viewer frees the labelmaps it shows). */
export async function mountAnnotationPanel(
  container: HTMLElement,
  viewer: Viewer,
  client: ApiClient,
  project: string,
  options: AnnotateOptions = {},
): Promise<AnnotationPanel> {
  const panel = new AnnotationPanel(container, viewer, client, project, options);
  window.carinaAnnotation = panel;
  try {
    await panel.refreshList();
    if (options.open) await panel.open(options.open);
  } catch (error) {
    panel.root.dataset.status = "error";
    panel.root.append(h("p", { class: "error" }, String(error)));
  }
  return panel;
}
