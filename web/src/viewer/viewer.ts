// The viewer: layouts of stack, MPR, slab and 3D viewports on one series, window presets,
// navigation and measurement tools. Measured values are listed in the DOM.
import {
  Enums,
  RenderingEngine,
  cache,
  eventTarget,
  utilities,
  type Types,
} from "@cornerstonejs/core";
import {
  AngleTool,
  BidirectionalTool,
  CrosshairsTool,
  EllipticalROITool,
  Enums as ToolEnums,
  LengthTool,
  PanTool,
  StackScrollTool,
  ToolGroupManager,
  TrackballRotateTool,
  WindowLevelTool,
  ZoomTool,
  annotation,
  segmentation,
  type Types as ToolTypes,
} from "@cornerstonejs/tools";
import { h } from "../dom";
import type { MeshActor } from "./meshes";
import { applySegmentation, type LoadedSegmentation } from "./segmentations";
import { loadVolume } from "./frames";
import { openingIndex, type LoadedSeries } from "./series";
import {
  BROWSER_VOLUME_BUDGET,
  MAX_BROWSER_SLICES,
  ServerPlane,
  seriesApi,
  volumeInfo,
  type ServerPlaneKind,
  type VolumeInfo,
} from "./server-planes";
import { initCornerstone } from "./setup";
import { PET_WINDOW, applyPetDisplay, attachReadout, hasSuv, isPet, stackValueAt } from "./pet";

export const WINDOW_PRESETS: Record<string, { center: number; width: number }> = {
  lung: { center: -600, width: 1500 },
  mediastinum: { center: 40, width: 400 },
  bone: { center: 400, width: 1800 },
  brain: { center: 40, width: 80 },
  abdomen: { center: 60, width: 400 },
  liver: { center: 60, width: 160 },
};

export const VOLUME_PRESETS: Record<string, string> = {
  bone: "CT-Bone",
  "soft tissue": "CT-Soft-Tissue",
  lung: "CT-Lung",
  angio: "CT-AAA",
};

type CellKind = "stack" | "axial" | "sagittal" | "coronal" | "mip" | "3d";
export type Layout = "1x1" | "1x2" | "2x2" | "mpr3d";
export type SlabMode = "none" | "mip" | "minip" | "avg";

export const LAYOUTS: Record<Layout, CellKind[]> = {
  "1x1": ["stack"],
  "1x2": ["stack", "mip"],
  "2x2": ["stack", "axial", "sagittal", "coronal"],
  mpr3d: ["axial", "sagittal", "coronal", "3d"],
};

const MEASURE_TOOLS = [LengthTool.toolName, AngleTool.toolName, EllipticalROITool.toolName, BidirectionalTool.toolName];
const PRIMARY_TOOLS = [
  WindowLevelTool.toolName,
  PanTool.toolName,
  ZoomTool.toolName,
  ...MEASURE_TOOLS,
  CrosshairsTool.toolName,
];
const TOOL_LABELS: Record<string, string> = {
  [WindowLevelTool.toolName]: "W/L",
  [PanTool.toolName]: "Pan",
  [ZoomTool.toolName]: "Zoom",
  [LengthTool.toolName]: "Length",
  [AngleTool.toolName]: "Angle",
  [EllipticalROITool.toolName]: "ROI",
  [BidirectionalTool.toolName]: "Bidirectional",
  [CrosshairsTool.toolName]: "Crosshairs",
};
const BLEND: Record<Exclude<SlabMode, "none">, Enums.BlendModes> = {
  mip: Enums.BlendModes.MAXIMUM_INTENSITY_BLEND,
  minip: Enums.BlendModes.MINIMUM_INTENSITY_BLEND,
  avg: Enums.BlendModes.AVERAGE_INTENSITY_BLEND,
};
const ORIENTATION: Record<string, Enums.OrientationAxis> = {
  axial: Enums.OrientationAxis.AXIAL,
  sagittal: Enums.OrientationAxis.SAGITTAL,
  coronal: Enums.OrientationAxis.CORONAL,
  mip: Enums.OrientationAxis.AXIAL,
};

let counter = 0;

export interface Measurement {
  uid: string;
  tool: string;
  viewport: string;
  values: Record<string, number>;
  unit: string;
  text: string;
  /** The annotation's handles (world, mm). */
  points: number[][];
}

export interface ViewerOptions {
  /** The project the series is read from (for the viewer API's server-rendered planes). */
  project?: string;
  layout?: Layout;
  /** Renders MPR and slabs on the server whatever the series' size (the `?planes=server` flag). */
  serverPlanes?: boolean;
  onLayoutChange?: (layout: Layout) => void;
}

/** A mounted viewer on one series; `destroy()` frees its GPU and cache resources. */
/** Degrees per second of the 3D auto-rotation. */
export const AUTO_ROTATE_DEG_PER_S = 30;

/** Moves a viewport's camera by `angle` (radians) about its view-up axis through the focal
 * point (Rodrigues' rotation of the focal point to camera vector), and renders. */
function orbit(viewport: Types.IVolumeViewport, angle: number): void {
  const { position, focalPoint, viewUp } = viewport.getCamera();
  if (!position || !focalPoint || !viewUp) return;
  const v = [position[0] - focalPoint[0], position[1] - focalPoint[1], position[2] - focalPoint[2]];
  const u = viewUp;
  const c = Math.cos(angle);
  const s = Math.sin(angle);
  const ud = u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
  const cross = [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]];
  const turned = [0, 1, 2].map((i) => v[i] * c + cross[i] * s + u[i] * ud * (1 - c));
  const length = Math.hypot(turned[0], turned[1], turned[2]) || 1;
  viewport.setCamera({
    focalPoint,
    position: [focalPoint[0] + turned[0], focalPoint[1] + turned[1], focalPoint[2] + turned[2]] as Types.Point3,
    viewPlaneNormal: [turned[0] / length, turned[1] / length, turned[2] / length] as Types.Point3,
  });
  viewport.render();
}

export class Viewer {
  readonly root: HTMLElement;
  readonly grid: HTMLElement;
  readonly measurementsList: HTMLElement;
  readonly side: HTMLElement;
  readonly engine: RenderingEngine;
  readonly id = `v${++counter}`;
  readonly volumeId: string;
  layout: Layout;
  cells: { kind: CellKind; id: string; element: HTMLDivElement }[] = [];
  window: { center: number; width: number };
  windowName = "default";
  slabMode: SlabMode = "none";
  slabThickness = 20;
  volumePreset = "bone";
  /** The pending animation frame of the 3D auto-rotation (null: not rotating). */
  private spinFrame: number | null = null;
  /** Degrees the sagittal and coronal planes are turned about the axial plane's normal (oblique MPR). */
  mprRotation = 0;
  activeTool = WindowLevelTool.toolName;
  /** Milliseconds the last layout took per phase (shown in data-timings for benchmarks). */
  timings: Record<string, number> = {};
  volumeLoaded = false;
  readonly segmentations: LoadedSegmentation[] = [];
  /** Whether MPR and slabs are rendered by the server (the series is too large to load here). */
  large = false;
  volumeInfo: Promise<VolumeInfo> | null = null;
  serverPlanes: ServerPlane[] = [];
  private volumePromise: Promise<void> | null = null;
  private destroyed = false;
  private readonly listeners: [string, EventListener][] = [];
  private readonly stackGroupId: string;
  private readonly volumeGroupId: string;
  private readonly group3dId: string;

  constructor(
    container: HTMLElement,
    readonly series: LoadedSeries,
    private readonly options: ViewerOptions = {},
  ) {
    this.layout = options.layout ?? "1x1";
    this.window = isPet(series.modality) ? PET_WINDOW : (series.window ?? WINDOW_PRESETS.mediastinum);
    this.volumeId = `cornerstoneStreamingImageVolume:${this.id}:${series.series}`;
    this.stackGroupId = `${this.id}-stack`;
    this.volumeGroupId = `${this.id}-volume`;
    this.group3dId = `${this.id}-3d`;
    this.grid = h("div", { class: "viewport-grid", "data-testid": "viewport-grid" });
    this.measurementsList = h("ul", { class: "measurements", "data-testid": "measurements" });
    this.side = h("aside", { class: "side" }, h("h3", {}, "Measurements"), this.measurementsList);
    this.root = h(
      "div",
      { class: "viewer", "data-testid": "viewer" },
      this.toolbar(),
      h(
        "div",
        { class: "viewer-body" },
        this.grid,
        this.side,
      ),
    );
    container.append(this.root);
    this.engine = new RenderingEngine(`${this.id}-engine`);
    this.setupToolGroups();
    this.listen(ToolEnums.Events.ANNOTATION_COMPLETED, () => this.refreshMeasurements());
    this.listen(ToolEnums.Events.ANNOTATION_MODIFIED, () => this.refreshMeasurements());
    this.listen(ToolEnums.Events.ANNOTATION_REMOVED, () => this.refreshMeasurements());
  }

  static async create(container: HTMLElement, series: LoadedSeries, options: ViewerOptions = {}): Promise<Viewer> {
    await initCornerstone();
    const viewer = new Viewer(container, series, options);
    performance.mark("carina:viewer-created");
    viewer.large =
      options.serverPlanes === true || series.slices > MAX_BROWSER_SLICES || series.volumeBytes > BROWSER_VOLUME_BUDGET;
    viewer.root.dataset.mode = viewer.large ? "server" : "browser";
    if (viewer.large && options.project) {
      // the server loads the whole series to describe it: do not hold the first image for that
      viewer.volumeInfo = volumeInfo(options.project, series.study, series.series);
    }
    await viewer.setLayout(viewer.layout);
    // the panels mounted on the viewer build label maps over every image
    await series.complete();
    return viewer;
  }

  private listen(type: string, handler: EventListener): void {
    eventTarget.addEventListener(type, handler);
    this.listeners.push([type, handler]);
  }

  // -- toolbar ----------------------------------------------------------------------------------

  private toolbar(): HTMLElement {
    const layout = h(
      "select",
      { "data-testid": "layout", "aria-label": "Layout" },
      ...Object.keys(LAYOUTS).map((name) => h("option", { value: name }, name === "mpr3d" ? "MPR + 3D" : name)),
    );
    layout.value = this.layout;
    layout.addEventListener("change", () => void this.setLayout(layout.value as Layout));

    const presets = h(
      "select",
      { "data-testid": "window-preset", "aria-label": "Window" },
      h("option", { value: "default" }, "Default window"),
      ...Object.entries(WINDOW_PRESETS).map(([name, w]) => h("option", { value: name }, `${name} ${w.center}/${w.width}`)),
    );
    presets.addEventListener("change", () => this.setWindowPreset(presets.value));

    const tools = h("span", { class: "tools" });
    for (const tool of PRIMARY_TOOLS) {
      const button = h("button", { type: "button", "data-tool": tool, class: tool === this.activeTool ? "on" : "" }, TOOL_LABELS[tool]);
      button.addEventListener("click", () => {
        this.setTool(tool);
        for (const other of tools.querySelectorAll("button")) other.classList.toggle("on", other === button);
      });
      tools.append(button);
    }

    const slab = h(
      "select",
      { "data-testid": "slab-mode", "aria-label": "Slab" },
      ...(["none", "mip", "minip", "avg"] as SlabMode[]).map((m) =>
        h("option", { value: m }, m === "none" ? "Thin" : m === "avg" ? "Average" : m === "mip" ? "MIP" : "MinIP"),
      ),
    );
    slab.addEventListener("change", () => void this.setSlab(slab.value as SlabMode, this.slabThickness));
    const thickness = h("input", {
      type: "range",
      min: "2",
      max: "120",
      step: "2",
      value: String(this.slabThickness),
      "data-testid": "slab-thickness",
      "aria-label": "Slab thickness (mm)",
    });
    const thicknessLabel = h("span", { "data-testid": "slab-thickness-label" }, `${this.slabThickness} mm`);
    thickness.addEventListener("input", () => {
      thicknessLabel.textContent = `${thickness.value} mm`;
      void this.setSlab(this.slabMode, Number(thickness.value));
    });

    const volumePreset = h(
      "select",
      { "data-testid": "volume-preset", "aria-label": "3D preset" },
      ...Object.keys(VOLUME_PRESETS).map((name) => h("option", { value: name }, `3D: ${name}`)),
    );
    volumePreset.addEventListener("change", () => this.setVolumePreset(volumePreset.value));
    const spin = h("input", { type: "checkbox", "data-testid": "auto-rotate", "aria-label": "Auto-rotate 3D" }) as HTMLInputElement;
    spin.addEventListener("change", () => this.setAutoRotate(spin.checked));

    const rotation = h("input", {
      type: "number",
      min: "-180",
      max: "180",
      step: "5",
      value: "0",
      "data-testid": "mpr-rotation",
      "aria-label": "Oblique MPR rotation (degrees)",
      title: "Oblique MPR: turns the sagittal and coronal planes about the axial normal",
    });
    rotation.addEventListener("change", () => this.rotateMpr(Number(rotation.value) || 0));

    const reset = h("button", { type: "button", "data-testid": "reset" }, "Reset");
    reset.addEventListener("click", () => {
      rotation.value = "0";
      this.reset();
    });

    return h("div", { class: "toolbar" }, layout, presets, tools, slab, thickness, thicknessLabel, volumePreset, h("label", {}, spin, " Auto-rotate"), h("label", {}, "Oblique ", rotation, "°"), reset);
  }

  // -- tools ------------------------------------------------------------------------------------

  private setupToolGroups(): void {
    const stack = ToolGroupManager.createToolGroup(this.stackGroupId) as ToolTypes.IToolGroup;
    const volume = ToolGroupManager.createToolGroup(this.volumeGroupId) as ToolTypes.IToolGroup;
    const three = ToolGroupManager.createToolGroup(this.group3dId) as ToolTypes.IToolGroup;
    for (const group of [stack, volume]) {
      for (const tool of [WindowLevelTool, PanTool, ZoomTool, StackScrollTool, ...[LengthTool, AngleTool, EllipticalROITool, BidirectionalTool]]) {
        group.addTool(tool.toolName);
      }
      group.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Wheel }] });
      group.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Auxiliary }] });
      group.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Secondary }] });
    }
    volume.addTool(CrosshairsTool.toolName, {
      getReferenceLineColor: () => "rgb(255, 200, 0)",
      viewportIndicators: false,
    });
    three.addTool(TrackballRotateTool.toolName);
    three.addTool(ZoomTool.toolName);
    three.addTool(PanTool.toolName);
    three.setToolActive(TrackballRotateTool.toolName, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Primary }] });
    three.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Secondary }] });
    three.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Auxiliary }] });
    this.setTool(this.activeTool);
  }

  setTool(tool: string): void {
    this.activeTool = tool;
    const primary = [{ mouseButton: ToolEnums.MouseBindings.Primary }];
    for (const groupId of [this.stackGroupId, this.volumeGroupId]) {
      const group = ToolGroupManager.getToolGroup(groupId);
      if (!group) continue;
      for (const name of PRIMARY_TOOLS) {
        if (!group.hasTool(name)) continue;
        if (name === ZoomTool.toolName || name === PanTool.toolName) {
          // keep their secondary/middle bindings
          const other = name === ZoomTool.toolName ? ToolEnums.MouseBindings.Secondary : ToolEnums.MouseBindings.Auxiliary;
          group.setToolActive(name, { bindings: name === tool ? [...primary, { mouseButton: other }] : [{ mouseButton: other }] });
        } else if (name === tool) {
          group.setToolActive(name, { bindings: primary });
        } else if (MEASURE_TOOLS.includes(name)) {
          group.setToolPassive(name);
        } else {
          group.setToolDisabled(name);
        }
      }
      if (!group.hasTool(tool)) group.setToolActive(WindowLevelTool.toolName, { bindings: primary });
    }
    this.root.dataset.tool = tool;
  }

  // -- layout -----------------------------------------------------------------------------------

  async setLayout(layout: Layout): Promise<void> {
    this.layout = layout;
    this.root.dataset.layout = layout;
    this.grid.dataset.status = "loading";
    this.options.onLayoutChange?.(layout);
    for (const cell of this.cells) {
      for (const groupId of [this.stackGroupId, this.volumeGroupId, this.group3dId]) {
        ToolGroupManager.getToolGroup(groupId)?.removeViewports(this.engine.id, cell.id);
      }
      if (this.engine.getViewport(cell.id)) this.engine.disableElement(cell.id);
    }
    this.cells = LAYOUTS[layout].map((kind, index) => {
      const element = h("div", { class: "viewport", "data-viewport": kind, "data-status": "loading" }) as HTMLDivElement;
      element.oncontextmenu = (event) => event.preventDefault();
      let renders = 0;
      element.addEventListener(Enums.Events.IMAGE_RENDERED, () => {
        element.dataset.renders = String(++renders);
      });
      return { kind, id: `${this.id}-${kind}-${index}`, element };
    });
    this.grid.className = `viewport-grid layout-${layout}`;
    this.grid.replaceChildren(
      ...this.cells.map((cell) =>
        h("div", { class: "cell" }, h("span", { class: "label" }, cell.kind === "3d" ? "3D" : cell.kind.toUpperCase()), cell.element),
      ),
    );
    this.serverPlanes = [];
    const stackCells = this.cells.filter((c) => c.kind === "stack");
    let volumeCells = this.cells.filter((c) => c.kind !== "stack" && c.kind !== "3d");
    let cells3d = this.cells.filter((c) => c.kind === "3d");
    const serverCells = this.large ? volumeCells : [];
    const serverCells3d = this.large ? cells3d : [];
    if (this.large) {
      volumeCells = [];
      cells3d = [];
    }
    const inputs: Types.PublicViewportInput[] = [
      ...stackCells.map((c) => ({ viewportId: c.id, element: c.element, type: Enums.ViewportType.STACK })),
      ...volumeCells.map((c) => ({
        viewportId: c.id,
        element: c.element,
        type: Enums.ViewportType.ORTHOGRAPHIC,
        defaultOptions: { orientation: ORIENTATION[c.kind], background: [0, 0, 0] as Types.Point3 },
      })),
    ];
    this.engine.setViewports(inputs);
    for (const c of stackCells) ToolGroupManager.getToolGroup(this.stackGroupId)?.addViewport(c.id, this.engine.id);
    for (const c of volumeCells) ToolGroupManager.getToolGroup(this.volumeGroupId)?.addViewport(c.id, this.engine.id);
    this.setTool(this.activeTool);

    const started = performance.now();
    this.timings = {};
    const lap = (name: string) => {
      this.timings[name] = Math.round(performance.now() - started);
      this.root.dataset.timings = JSON.stringify(this.timings);
    };
    await Promise.all(stackCells.map((c) => this.showStack(c.id, c.element)));
    if (stackCells.length) lap("stack");
    if (serverCells.length || serverCells3d.length) {
      await this.showServerPlanes(serverCells, serverCells3d);
      if (serverCells.length) lap("server");
    }
    if (volumeCells.length || cells3d.length) {
      await this.ensureVolume();
      lap("volume");
      if (this.destroyed || this.layout !== layout) return;
      for (const c of volumeCells) {
        const viewport = this.engine.getViewport(c.id) as Types.IVolumeViewport;
        await viewport.setVolumes([{ volumeId: this.volumeId }]);
        viewport.setProperties({ voiRange: this.voiRange() });
        if (isPet(this.series.modality)) applyPetDisplay(viewport, this.volumeId);
      }
      await this.setSlab(this.slabMode, this.slabThickness);
      for (const c of volumeCells) {
        (this.engine.getViewport(c.id) as Types.IVolumeViewport).render();
        c.element.dataset.status = "ready";
      }
      if (this.mprRotation) this.rotateMpr(this.mprRotation);
      if (volumeCells.length) lap("mpr");
      // 3D is attached once the volume is in memory: streaming into it re-renders per slice
      for (const c of cells3d) await this.show3d(c.id, c.element);
      if (cells3d.length) lap("3d");
    }
    for (const seg of this.segmentations) applySegmentation(this, seg);
    this.grid.dataset.status = "ready";
  }

  /** MPR and slab cells as server-rendered images; no 3D (it needs the volume here). */
  private async showServerPlanes(
    cells: { kind: CellKind; element: HTMLDivElement }[],
    cells3d: { element: HTMLDivElement }[],
  ): Promise<void> {
    const project = this.options.project;
    if (!project || !this.volumeInfo) return;
    const volume = await this.volumeInfo;
    const base = seriesApi(project, this.series.study, this.series.series);
    for (const cell of cells) {
      const plane: ServerPlaneKind = cell.kind === "mip" ? "axial" : (cell.kind as ServerPlaneKind);
      const server = new ServerPlane(cell.element, base, plane, volume.planes[plane], () => ({
        window: this.window,
        mode: cell.kind === "mip" ? "mip" : this.slabMode,
        thickness: this.slabThickness,
      }));
      this.serverPlanes.push(server);
      server.render();
    }
    for (const cell of cells3d) {
      cell.element.dataset.status = "unavailable";
      cell.element.replaceChildren(
        h("p", { class: "muted" }, `3D needs the whole series in the browser: ${this.series.slices} slices is over the limit.`),
      );
    }
  }

  private async showStack(id: string, element: HTMLDivElement): Promise<void> {
    const viewport = this.engine.getViewport(id) as Types.IStackViewport;
    await viewport.setStack(this.series.imageIds, openingIndex(this.series.imageIds.length));
    viewport.setProperties({ voiRange: this.voiRange() });
    if (isPet(this.series.modality)) {
      applyPetDisplay(viewport);
      const readout = h("span", { class: "readout", "data-testid": "readout" });
      element.parentElement?.append(readout);
      attachReadout(element, () => this.engine.getViewport(id), (world) => stackValueAt(viewport, world), () => hasSuv(viewport.getCurrentImageId()), readout);
    }
    element.addEventListener(
      Enums.Events.IMAGE_RENDERED,
      () => {
        performance.mark("carina:first-image");
        element.dataset.firstImage = String(Math.round(performance.now()));
      },
      { once: true },
    );
    viewport.render();
    element.dataset.status = "ready";
    element.addEventListener(Enums.Events.STACK_NEW_IMAGE, () => {
      element.dataset.index = String(viewport.getCurrentImageIdIndex());
    });
    element.dataset.index = String(viewport.getCurrentImageIdIndex());
  }

  private ensureVolume(): Promise<void> {
    this.volumePromise ??= (async () => {
      // the whole series in one response, registered for the loader (see frames.ts)
      this.root.dataset.framesPrefetched = String(await loadVolume(this.volumeId, this.series));
      this.volumeLoaded = true;
      this.root.dataset.volume = "loaded";
    })();
    return this.volumePromise;
  }

  private async show3d(id: string, element: HTMLDivElement): Promise<void> {
    this.engine.enableElement({
      viewportId: id,
      element,
      type: Enums.ViewportType.VOLUME_3D,
      defaultOptions: { orientation: Enums.OrientationAxis.CORONAL, background: [0.1, 0.1, 0.12] as Types.Point3 },
    });
    ToolGroupManager.getToolGroup(this.group3dId)?.addViewport(id, this.engine.id);
    const viewport = this.engine.getViewport(id) as Types.IVolumeViewport;
    await viewport.setVolumes([{ volumeId: this.volumeId }]);
    viewport.setProperties({ preset: VOLUME_PRESETS[this.volumePreset] });
    for (const mesh of this.meshes.values()) viewport.addActor({ uid: mesh.uid, actor: mesh.actor as never });
    element.dataset.meshes = String(this.meshes.size);
    viewport.render();
    element.dataset.status = "ready";
  }

  /** Meshes shown in 3D, by uid (kept across layout changes). */
  readonly meshes = new Map<string, MeshActor>();

  /** Adds (or removes) a mesh in every 3D viewport. */
  setMesh(mesh: MeshActor, shown: boolean): void {
    if (shown) this.meshes.set(mesh.uid, mesh);
    else this.meshes.delete(mesh.uid);
    for (const cell of this.cells.filter((c) => c.kind === "3d")) {
      const viewport = this.engine.getViewport(cell.id);
      if (!viewport) continue;
      if (shown) viewport.addActor({ uid: mesh.uid, actor: mesh.actor as never });
      else viewport.removeActors([mesh.uid]);
      viewport.render();
      cell.element.dataset.meshes = String(this.meshes.size);
    }
  }

  /** The tool groups of the 2D viewports (panels add their own tools to them, e.g. label editing). */
  toolGroupIds(): string[] {
    return [this.stackGroupId, this.volumeGroupId];
  }

  /** The viewports that show segmentation overlays (all but 3D). */
  overlayViewportIds(): string[] {
    return this.cells.filter((c) => c.kind !== "3d" && this.engine.getViewport(c.id)).map((c) => c.id);
  }

  addSegmentation(seg: LoadedSegmentation): void {
    this.segmentations.push(seg);
  }

  renderAll(): void {
    this.engine.render();
  }

  // -- display ----------------------------------------------------------------------------------

  private voiRange(): Types.VOIRange {
    return { lower: this.window.center - this.window.width / 2, upper: this.window.center + this.window.width / 2 };
  }

  setWindowPreset(name: string): void {
    this.windowName = name;
    this.window = WINDOW_PRESETS[name] ?? this.series.window ?? WINDOW_PRESETS.mediastinum;
    this.root.dataset.window = name;
    for (const plane of this.serverPlanes) plane.render();
    for (const cell of this.cells) {
      if (cell.kind === "3d") continue;
      const viewport = this.engine.getViewport(cell.id) as Types.IStackViewport | Types.IVolumeViewport | undefined;
      if (!viewport) continue;
      viewport.setProperties({ voiRange: this.voiRange() });
      viewport.render();
    }
  }

  /** The slab of the MPR viewports (the MIP cell is always a MIP); `thickness` is the full slab in mm. */
  async setSlab(mode: SlabMode, thickness: number): Promise<void> {
    this.slabMode = mode;
    this.slabThickness = thickness;
    this.root.dataset.slab = `${mode}:${thickness}`;
    for (const plane of this.serverPlanes) plane.render();
    for (const cell of this.cells) {
      if (cell.kind === "stack" || cell.kind === "3d") continue;
      const viewport = this.engine.getViewport(cell.id) as Types.IVolumeViewport | undefined;
      if (!viewport || !this.volumeLoaded) continue;
      const effective: SlabMode = cell.kind === "mip" ? "mip" : mode;
      if (effective === "none") {
        viewport.setBlendMode(Enums.BlendModes.COMPOSITE);
        viewport.resetSlabThickness();
      } else {
        viewport.setBlendMode(BLEND[effective]);
        // Cornerstone's slab thickness extends on both sides of the plane
        viewport.setSlabThickness(thickness / 2);
      }
      viewport.setProperties({ voiRange: this.voiRange() });
      viewport.render();
    }
  }

  /** Turns the 3D viewports' cameras about their view-up axis through the focal point, at
   * {@link AUTO_ROTATE_DEG_PER_S}, until switched off (kept across layouts). */
  setAutoRotate(on: boolean): void {
    this.root.dataset.autoRotate = on ? "on" : "off";
    if (!on) {
      if (this.spinFrame !== null) cancelAnimationFrame(this.spinFrame);
      this.spinFrame = null;
      return;
    }
    if (this.spinFrame !== null) return;
    let last = performance.now();
    const step = (now: number) => {
      // the angle follows the clock, however slowly the frames come (software rendering)
      const angle = (AUTO_ROTATE_DEG_PER_S * Math.min(1, (now - last) / 1000) * Math.PI) / 180;
      last = now;
      for (const cell of this.cells.filter((c) => c.kind === "3d")) {
        const viewport = this.engine.getViewport(cell.id) as Types.IVolumeViewport | undefined;
        if (viewport) orbit(viewport, angle);
      }
      this.spinFrame = this.destroyed ? null : requestAnimationFrame(step);
    };
    this.spinFrame = requestAnimationFrame(step);
  }

  setVolumePreset(name: string): void {
    this.volumePreset = name;
    for (const cell of this.cells.filter((c) => c.kind === "3d")) {
      const viewport = this.engine.getViewport(cell.id) as Types.IVolumeViewport | undefined;
      viewport?.setProperties({ preset: VOLUME_PRESETS[name] });
      viewport?.render();
    }
  }

  reset(): void {
    this.mprRotation = 0;
    this.root.dataset.mprRotation = "0";
    for (const cell of this.cells) {
      const viewport = this.engine.getViewport(cell.id);
      viewport?.resetCamera();
      viewport?.render();
    }
  }

  /**
   * Oblique MPR: turns the sagittal and coronal planes by `degrees` about the axial plane's normal
   * through their focal points (from their standard orientation, so the angle is absolute).
   */
  rotateMpr(degrees: number): void {
    this.mprRotation = degrees;
    this.root.dataset.mprRotation = String(degrees);
    const axialCell = this.cells.find((c) => c.kind === "axial");
    const axial = axialCell && (this.engine.getViewport(axialCell.id) as Types.IVolumeViewport | undefined);
    if (!axial || !this.volumeLoaded) return;
    const axis = axial.getCamera().viewPlaneNormal as Types.Point3;
    for (const cell of this.cells) {
      if (cell.kind !== "sagittal" && cell.kind !== "coronal") continue;
      const viewport = this.engine.getViewport(cell.id) as Types.IVolumeViewport | undefined;
      if (!viewport) continue;
      const camera = viewport.getCamera();
      const focal = camera.focalPoint as Types.Point3;
      const distance = Math.hypot(...subtract(camera.position as Types.Point3, focal));
      const base = STANDARD_NORMALS[cell.kind];
      const normal = rotateAbout(base, axis, (degrees * Math.PI) / 180);
      // the view-up lies along the axis: the turn leaves it as it is
      const viewUp = camera.viewUp as Types.Point3;
      viewport.setCamera({
        viewPlaneNormal: normal,
        viewUp,
        focalPoint: focal,
        position: [focal[0] + normal[0] * distance, focal[1] + normal[1] * distance, focal[2] + normal[2] * distance],
      });
      viewport.render();
    }
  }

  // -- measurements -----------------------------------------------------------------------------

  measurements(): Measurement[] {
    const ours = new Set(this.cells.map((c) => c.id));
    const found: Measurement[] = [];
    for (const item of annotation.state.getAllAnnotations()) {
      const tool = item.metadata?.toolName ?? "";
      if (!MEASURE_TOOLS.includes(tool)) continue;
      const viewportId = this.cells.find((c) => {
        const viewport = this.engine.getViewport(c.id);
        return viewport && ours.has(c.id) && item.metadata?.FrameOfReferenceUID === viewport.getFrameOfReferenceUID();
      })?.id;
      const stats = Object.values((item.data as { cachedStats?: Record<string, Record<string, unknown>> }).cachedStats ?? {})[0];
      if (!stats) continue;
      const values: Record<string, number> = {};
      for (const key of ["length", "width", "angle", "mean", "stdDev", "area", "max", "min"]) {
        const value = stats[key];
        if (typeof value === "number" && Number.isFinite(value)) values[key] = value;
      }
      const unit = String(stats.unit ?? stats.modalityUnit ?? stats.lengthUnit ?? "");
      const text = describe(tool, values, stats);
      const points = ((item.data as { handles?: { points?: number[][] } }).handles?.points ?? []).map((p) => [...p]);
      found.push({ uid: item.annotationUID ?? "", tool, viewport: viewportId ?? "", values, unit, text, points });
    }
    return found;
  }

  refreshMeasurements(): void {
    const list = this.measurements();
    this.measurementsList.replaceChildren(
      ...list.map((m) => {
        const item = h(
          "li",
          { "data-tool": m.tool, "data-uid": m.uid, "data-values": JSON.stringify(m.values), "data-points": JSON.stringify(m.points) },
          `${TOOL_LABELS[m.tool]}: ${m.text}`,
        );
        for (const [key, value] of Object.entries(m.values)) item.dataset[key] = String(value);
        return item;
      }),
    );
  }

  // -- automation hooks (used by the browser tests) ------------------------------------------------

  /** The page position (CSS px) of an image pixel (column, row) of the stack viewport's image. */
  imageToPage(column: number, row: number, kind: CellKind = "stack"): [number, number] {
    const cell = this.cells.find((c) => c.kind === kind);
    if (!cell) throw new Error(`no ${kind} viewport`);
    const viewport = this.engine.getViewport(cell.id) as Types.IStackViewport;
    const world = utilities.imageToWorldCoords(viewport.getCurrentImageId(), [column, row]);
    if (!world) throw new Error("no image in the viewport");
    const canvas = viewport.worldToCanvas(world);
    const box = cell.element.getBoundingClientRect();
    return [box.left + canvas[0], box.top + canvas[1]];
  }

  /** Values of the loaded volume at voxels (column i, row j, image k in the series' order). */
  volumeValues(voxels: [number, number, number][]): number[] {
    const volume = cache.getVolume(this.volumeId);
    const voxelManager = volume?.voxelManager;
    if (!voxelManager || !this.volumeLoaded) throw new Error("no volume loaded");
    return voxels.map(([i, j, k]) => Number(voxelManager.getAtIJK(i, j, k)));
  }

  /** The world (LPS, mm) position of an image pixel (column, row) of the stack viewport's image. */
  imageToWorld(column: number, row: number): Types.Point3 {
    const cell = this.cells.find((c) => c.kind === "stack");
    if (!cell) throw new Error("no stack viewport");
    const viewport = this.engine.getViewport(cell.id) as Types.IStackViewport;
    const world = utilities.imageToWorldCoords(viewport.getCurrentImageId(), [column, row]);
    if (!world) throw new Error("no image in the viewport");
    return world;
  }

  /** The page position (CSS px) of a world point in the first viewport of `kind`. */
  worldToPage(world: Types.Point3, kind: CellKind): [number, number] {
    const cell = this.cells.find((c) => c.kind === kind);
    const viewport = cell && this.engine.getViewport(cell.id);
    if (!cell || !viewport) throw new Error(`no ${kind} viewport`);
    const canvas = viewport.worldToCanvas(world);
    const box = cell.element.getBoundingClientRect();
    return [box.left + canvas[0], box.top + canvas[1]];
  }

  /** The camera of the first viewport of `kind` (plain arrays, for the browser tests). */
  camera(kind: CellKind): { focalPoint: number[]; viewPlaneNormal: number[]; viewUp: number[]; parallelScale: number } {
    const cell = this.cells.find((c) => c.kind === kind);
    const viewport = cell && this.engine.getViewport(cell.id);
    if (!viewport) throw new Error(`no ${kind} viewport`);
    const camera = viewport.getCamera();
    return {
      focalPoint: [...(camera.focalPoint ?? [])],
      viewPlaneNormal: [...(camera.viewPlaneNormal ?? [])],
      viewUp: [...(camera.viewUp ?? [])],
      parallelScale: camera.parallelScale ?? 0,
    };
  }

  destroy(): void {
    this.destroyed = true;
    this.setAutoRotate(false);
    for (const [type, handler] of this.listeners) eventTarget.removeEventListener(type, handler);
    for (const groupId of [this.stackGroupId, this.volumeGroupId, this.group3dId]) {
      ToolGroupManager.destroyToolGroup(groupId);
    }
    annotation.state.removeAllAnnotations();
    for (const seg of this.segmentations) segmentation.removeSegmentation(seg.id);
    this.engine.destroy();
    // only layouts with volume viewports load the volume (removing an absent one throws)
    if (this.volumePromise) {
      try {
        cache.removeVolumeLoadObject(this.volumeId);
      } catch {
        /* not cached yet */
      }
    }
  }
}

/** View-plane normals of the standard sagittal and coronal orientations (LPS). */
const STANDARD_NORMALS: Record<"sagittal" | "coronal", Types.Point3> = {
  sagittal: [1, 0, 0],
  coronal: [0, -1, 0],
};

function subtract(a: Types.Point3, b: Types.Point3): Types.Point3 {
  return [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
}

/** `v` turned by `angle` radians about the unit vector `axis` (Rodrigues' formula). */
function rotateAbout(v: Types.Point3, axis: Types.Point3, angle: number): Types.Point3 {
  const [x, y, z] = axis;
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const dot = v[0] * x + v[1] * y + v[2] * z;
  const cross: Types.Point3 = [y * v[2] - z * v[1], z * v[0] - x * v[2], x * v[1] - y * v[0]];
  return [0, 1, 2].map((i) => v[i] * cos + cross[i] * sin + axis[i] * dot * (1 - cos)) as Types.Point3;
}

function describe(tool: string, values: Record<string, number>, stats: Record<string, unknown>): string {
  const unit = String(stats.unit ?? "mm");
  const f = (v: number | undefined, digits = 1) => (v === undefined ? "?" : v.toFixed(digits));
  if (tool === LengthTool.toolName) return `${f(values.length)} ${unit}`;
  if (tool === AngleTool.toolName) return `${f(values.angle)}°`;
  if (tool === BidirectionalTool.toolName) return `${f(values.length)} × ${f(values.width)} ${unit}`;
  const modality = String(stats.modalityUnit ?? "");
  return `mean ${f(values.mean)} ${modality}, SD ${f(values.stdDev)}, area ${f(values.area)} ${String(stats.areaUnit ?? "")}`;
}

