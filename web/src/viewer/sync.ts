// Two series side by side (1x2), e.g. a CT and its PET or two time points: slices kept at the
// same patient position by Cornerstone's image-slice synchronizer, window/level and zoom
// optionally linked, and PET fused over the CT (same frame of reference) with adjustable opacity.
// Both sides are orthographic volume viewports, so the same controls serve axial, sagittal and
// coronal planes.
import { Enums, RenderingEngine, cache, getRenderingEngine, metaData, type Types } from "@cornerstonejs/core";
import {
  Enums as ToolEnums,
  PanTool,
  StackScrollTool,
  SynchronizerManager,
  ToolGroupManager,
  WindowLevelTool,
  ZoomTool,
  synchronizers,
  type Types as ToolTypes,
} from "@cornerstonejs/tools";
import { h } from "../dom";
import { loadVolume } from "./frames";
import { applyPetDisplay, attachReadout, fusePetActor, isPet, volumeValueAt } from "./pet";
import type { LoadedSeries } from "./series";
import { initCornerstone } from "./setup";

export type SyncOrientation = "axial" | "sagittal" | "coronal";
const ORIENTATIONS: Record<SyncOrientation, Enums.OrientationAxis> = {
  axial: Enums.OrientationAxis.AXIAL,
  sagittal: Enums.OrientationAxis.SAGITTAL,
  coronal: Enums.OrientationAxis.CORONAL,
};

let counter = 0;

const dot = (a: Types.Point3, b: Types.Point3) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];

/**
 * A synchronizer callback: moves the target viewport's plane along its normal to the source's
 * plane (same patient position in their common frame of reference), when both look along the
 * same axis. Cornerstone's image-slice synchronizer does not follow volume viewports here (it
 * listens for stack images), so the plane is matched from the cameras, which every change of
 * slice modifies.
 */
function slicePositionSync(
  _synchronizer: unknown,
  source: Types.IViewportId,
  target: Types.IViewportId,
): void {
  const engine = getRenderingEngine(target.renderingEngineId);
  const from = engine?.getViewport(source.viewportId);
  const to = engine?.getViewport(target.viewportId);
  if (!from || !to) return;
  const a = from.getCamera();
  const b = to.getCamera();
  if (!a.focalPoint || !b.focalPoint || !b.position || !a.viewPlaneNormal || !b.viewPlaneNormal) return;
  if (Math.abs(dot(a.viewPlaneNormal, b.viewPlaneNormal)) < 0.99) return;
  const normal = b.viewPlaneNormal;
  const delta = dot([a.focalPoint[0] - b.focalPoint[0], a.focalPoint[1] - b.focalPoint[1], a.focalPoint[2] - b.focalPoint[2]], normal);
  if (Math.abs(delta) < 1e-3) return;
  const shift = (p: Types.Point3): Types.Point3 => [p[0] + delta * normal[0], p[1] + delta * normal[1], p[2] + delta * normal[2]];
  to.setCamera({ focalPoint: shift(b.focalPoint), position: shift(b.position) });
  to.render();
}

interface Side {
  key: "left" | "right";
  series: LoadedSeries;
  volumeId: string;
  viewportId: string;
  element: HTMLDivElement;
}

/** What a viewport shows now: its slice index, the position of that image and the focal point. */
export interface SliceState {
  index: number;
  imageIndex: number;
  imagePosition: number[] | null;
  focalPoint: number[];
  /** The camera's parallel scale (half the viewport height in mm): smaller is zoomed in. */
  scale: number;
}

/** The side-by-side view; `destroy()` frees its viewports, synchronizers and volumes. */
export class SyncView {
  readonly root: HTMLElement;
  readonly id = `s${++counter}`;
  readonly engine: RenderingEngine;
  readonly left: Side;
  readonly right: Side;
  orientation: SyncOrientation = "axial";
  fused = false;
  /** The fused PET's opacity above the fusion threshold (vtk.js corrects it for the sampling of
   * the slice, so values below 1 show much fainter than their number). */
  opacity = 1;
  private readonly groupId: string;
  private readonly syncIds: Record<"slice" | "voi" | "zoom", string>;
  private readonly cleanups: (() => void)[] = [];

  private constructor(
    container: HTMLElement,
    first: LoadedSeries,
    second: LoadedSeries,
    private readonly onClose?: () => void,
  ) {
    // a PET goes to the right, over a CT on the left
    const [a, b] = isPet(first.modality) && !isPet(second.modality) ? [second, first] : [first, second];
    const side = (key: "left" | "right", series: LoadedSeries): Side => {
      const element = h("div", { class: "viewport", "data-viewport": key, "data-status": "loading", "data-modality": series.modality }) as HTMLDivElement;
      element.oncontextmenu = (event) => event.preventDefault();
      let renders = 0;
      element.addEventListener(Enums.Events.IMAGE_RENDERED, () => {
        element.dataset.renders = String(++renders);
      });
      return {
        key,
        series,
        volumeId: `cornerstoneStreamingImageVolume:${this.id}:${series.series}`,
        viewportId: `${this.id}-${key}`,
        element,
      };
    };
    this.left = side("left", a);
    this.right = side("right", b);
    this.groupId = `${this.id}-tools`;
    this.syncIds = { slice: `${this.id}-slice`, voi: `${this.id}-voi`, zoom: `${this.id}-zoom` };
    this.engine = new RenderingEngine(`${this.id}-engine`);
    this.root = h("div", { class: "viewer sync-view", "data-testid": "sync-view", "data-status": "loading" }, this.toolbar(), this.grid());
    container.append(this.root);
  }

  static async create(container: HTMLElement, first: LoadedSeries, second: LoadedSeries, onClose?: () => void): Promise<SyncView> {
    await initCornerstone();
    await Promise.all([first.complete(), second.complete()]);
    const view = new SyncView(container, first, second, onClose);
    await view.start();
    return view;
  }

  /** Whether the PET on the right can be fused over the left series (a non-PET). */
  get canFuse(): boolean {
    return isPet(this.right.series.modality) && !isPet(this.left.series.modality);
  }

  // -- DOM ----------------------------------------------------------------------------------------

  private toolbar(): HTMLElement {
    const orientation = h(
      "select",
      { "data-testid": "sync-orientation", "aria-label": "Plane" },
      ...Object.keys(ORIENTATIONS).map((name) => h("option", { value: name }, name)),
    );
    orientation.addEventListener("change", () => void this.setOrientation(orientation.value as SyncOrientation));
    const check = (testid: string, text: string, checked: boolean, change: (on: boolean) => void) => {
      const input = h("input", { type: "checkbox", "data-testid": testid }) as HTMLInputElement;
      input.checked = checked;
      input.addEventListener("change", () => change(input.checked));
      return h("label", {}, input, ` ${text}`);
    };
    const controls: HTMLElement[] = [
      orientation,
      check("sync-scroll", "Sync scroll", true, (on) => this.link("slice", on)),
      check("sync-voi", "Link W/L", false, (on) => this.link("voi", on)),
      check("sync-zoom", "Link zoom", false, (on) => this.link("zoom", on)),
    ];
    if (this.canFuse) {
      const opacity = h("input", {
        type: "range",
        min: "0",
        max: "1",
        step: "0.05",
        value: String(this.opacity),
        "data-testid": "fuse-opacity",
        "aria-label": "PET opacity",
      }) as HTMLInputElement;
      opacity.addEventListener("input", () => this.setOpacity(Number(opacity.value)));
      controls.push(check("fuse", "Fuse with CT", false, (on) => void this.setFusion(on)), opacity);
    }
    const close = h("button", { type: "button", "data-testid": "sync-close" }, "Close");
    close.addEventListener("click", () => this.onClose?.());
    return h("div", { class: "toolbar" }, ...controls, close);
  }

  private grid(): HTMLElement {
    const cell = (side: Side) => {
      const readout = h("span", { class: "readout", "data-testid": `readout-${side.key}` });
      const cleanup = attachReadout(
        side.element,
        () => this.engine.getViewport(side.viewportId),
        (world) => volumeValueAt(this.readoutVolume(side), world),
        () => isPet(this.readoutSeries(side).modality),
        readout,
      );
      this.cleanups.push(cleanup);
      return h(
        "div",
        { class: "cell" },
        h("span", { class: "label" }, `${side.series.modality} ${side.series.description}`),
        side.element,
        readout,
      );
    };
    return h("div", { class: "viewport-grid layout-1x2", "data-testid": "sync-grid" }, cell(this.left), cell(this.right));
  }

  /** The readout of the fused left viewport shows the PET under the mouse. */
  private readoutVolume(side: Side): string {
    return side.key === "left" && this.fused ? this.right.volumeId : side.volumeId;
  }

  private readoutSeries(side: Side): LoadedSeries {
    return side.key === "left" && this.fused ? this.right.series : side.series;
  }

  // -- viewports ----------------------------------------------------------------------------------

  private async start(): Promise<void> {
    const sides = [this.left, this.right];
    this.engine.setViewports(
      sides.map((side) => ({
        viewportId: side.viewportId,
        element: side.element,
        type: Enums.ViewportType.ORTHOGRAPHIC,
        defaultOptions: { orientation: ORIENTATIONS[this.orientation], background: [0, 0, 0] as Types.Point3 },
      })),
    );
    const group = ToolGroupManager.createToolGroup(this.groupId) as ToolTypes.IToolGroup;
    for (const tool of [WindowLevelTool, PanTool, ZoomTool, StackScrollTool]) group.addTool(tool.toolName);
    group.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Wheel }] });
    group.setToolActive(WindowLevelTool.toolName, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Primary }] });
    group.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Auxiliary }] });
    group.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Secondary }] });
    for (const side of sides) group.addViewport(side.viewportId, this.engine.id);

    await Promise.all(sides.map((side) => this.loadVolume(side)));
    for (const side of sides) {
      const viewport = this.viewport(side);
      await viewport.setVolumes([{ volumeId: side.volumeId }]);
      this.display(side);
      const report = () => this.report(side);
      side.element.addEventListener(Enums.Events.VOLUME_NEW_IMAGE, report);
      side.element.addEventListener(Enums.Events.CAMERA_MODIFIED, report);
      report();
      side.element.dataset.status = "ready";
    }
    SynchronizerManager.createSynchronizer(this.syncIds.slice, Enums.Events.CAMERA_MODIFIED, slicePositionSync);
    synchronizers.createVOISynchronizer(this.syncIds.voi, { syncInvertState: false, syncColormap: false });
    synchronizers.createZoomPanSynchronizer(this.syncIds.zoom);
    this.link("slice", true);
    this.engine.render();
    this.root.dataset.status = "ready";
  }

  private async loadVolume(side: Side): Promise<void> {
    side.element.dataset.framesPrefetched = String(await loadVolume(side.volumeId, side.series));
  }

  viewport(side: Side): Types.IVolumeViewport {
    return this.engine.getViewport(side.viewportId) as Types.IVolumeViewport;
  }

  /** The colour map and window of a side's own volume (PET: colour map and SUV window). */
  private display(side: Side): void {
    const viewport = this.viewport(side);
    if (isPet(side.series.modality)) applyPetDisplay(viewport, side.volumeId);
    else {
      const window = side.series.window ?? { center: 40, width: 400 };
      viewport.setProperties({ voiRange: { lower: window.center - window.width / 2, upper: window.center + window.width / 2 } }, side.volumeId);
    }
  }

  /** data-index (slice index), data-image-index and data-position (the current image's
   * ImagePositionPatient) and data-focal (the camera's focal point, LPS mm) of a viewport. */
  private report(side: Side): void {
    const state = this.sliceState(side.key);
    side.element.dataset.index = String(state.index);
    side.element.dataset.imageIndex = String(state.imageIndex);
    side.element.dataset.focal = state.focalPoint.map((v) => v.toFixed(2)).join(",");
    if (state.imagePosition) side.element.dataset.position = state.imagePosition.map((v) => v.toFixed(2)).join(",");
    else delete side.element.dataset.position;
  }

  sliceState(key: "left" | "right"): SliceState {
    const viewport = this.viewport(key === "left" ? this.left : this.right);
    const imageId = viewport.getCurrentImageId();
    const plane = imageId ? (metaData.get("imagePlaneModule", imageId) as { imagePositionPatient?: number[] } | undefined) : undefined;
    return {
      index: viewport.getSliceIndex(),
      imageIndex: viewport.getCurrentImageIdIndex(),
      imagePosition: plane?.imagePositionPatient ? [...plane.imagePositionPatient] : null,
      focalPoint: [...viewport.getCamera().focalPoint!],
      scale: viewport.getCamera().parallelScale ?? 0,
    };
  }

  // -- controls -----------------------------------------------------------------------------------

  /** Links (or unlinks) the two viewports' slices, window/level or zoom and pan. */
  link(kind: "slice" | "voi" | "zoom", on: boolean): void {
    const synchronizer = SynchronizerManager.getSynchronizer(this.syncIds[kind]);
    if (!synchronizer) return;
    for (const side of [this.left, this.right]) {
      const ref = { renderingEngineId: this.engine.id, viewportId: side.viewportId };
      if (on) synchronizer.add(ref);
      else synchronizer.remove(ref);
    }
    this.root.dataset[kind] = on ? "on" : "off";
  }

  async setOrientation(orientation: SyncOrientation): Promise<void> {
    this.orientation = orientation;
    for (const side of [this.left, this.right]) {
      const viewport = this.viewport(side);
      viewport.setOrientation(ORIENTATIONS[orientation]);
      viewport.render();
      this.report(side);
    }
    this.root.dataset.orientation = orientation;
  }

  /** The PET volume over the left series, in its colour map at the chosen opacity. */
  async setFusion(on: boolean): Promise<void> {
    if (!this.canFuse) return;
    this.fused = on;
    const viewport = this.viewport(this.left);
    const camera = viewport.getCamera();
    const pet = {
      volumeId: this.right.volumeId,
      actorUID: this.right.volumeId,
      callback: ({ volumeActor }: { volumeActor: unknown }) => fusePetActor(volumeActor, this.opacity),
    };
    await viewport.setVolumes(on ? [{ volumeId: this.left.volumeId }, pet] : [{ volumeId: this.left.volumeId }]);
    this.display(this.left);
    viewport.setCamera(camera);
    viewport.render();
    this.root.dataset.fused = on ? "on" : "off";
  }

  setOpacity(opacity: number): void {
    this.opacity = opacity;
    this.root.dataset.opacity = String(opacity);
    if (!this.fused) return;
    const viewport = this.viewport(this.left);
    const actor = viewport.getActor(this.right.volumeId);
    if (actor) fusePetActor(actor.actor, opacity);
    viewport.render();
  }

  /** Moves the left viewport's plane onto a world point (LPS mm); with scrolling linked the
   * right one follows. */
  jumpTo(world: Types.Point3): void {
    const viewport = this.viewport(this.left);
    const { focalPoint, position, viewPlaneNormal } = viewport.getCamera();
    if (!focalPoint || !position || !viewPlaneNormal) return;
    const delta = dot([world[0] - focalPoint[0], world[1] - focalPoint[1], world[2] - focalPoint[2]], viewPlaneNormal);
    const shift = (p: Types.Point3): Types.Point3 => [
      p[0] + delta * viewPlaneNormal[0],
      p[1] + delta * viewPlaneNormal[1],
      p[2] + delta * viewPlaneNormal[2],
    ];
    viewport.setCamera({ focalPoint: shift(focalPoint), position: shift(position) });
    viewport.render();
  }

  // -- automation hooks (used by the browser tests) -----------------------------------------------

  /** The page position (CSS px) of a world point (LPS mm) in a side's viewport. */
  worldToPage(key: "left" | "right", world: Types.Point3): [number, number] {
    const side = key === "left" ? this.left : this.right;
    const canvas = this.viewport(side).worldToCanvas(world);
    const box = side.element.getBoundingClientRect();
    return [box.left + canvas[0], box.top + canvas[1]];
  }

  destroy(): void {
    for (const cleanup of this.cleanups) cleanup();
    for (const id of Object.values(this.syncIds)) SynchronizerManager.destroySynchronizer(id);
    ToolGroupManager.destroyToolGroup(this.groupId);
    this.engine.destroy();
    for (const side of [this.left, this.right]) {
      try {
        cache.removeVolumeLoadObject(side.volumeId);
      } catch {
        /* not cached */
      }
    }
    this.root.remove();
  }
}

/** A "Side by side with…" picker of the study's other image series. */
export function compareControl(
  options: { uid: string; label: string }[],
  onPick: (uid: string) => void,
): HTMLElement {
  const select = h(
    "select",
    { "data-testid": "compare-series", "aria-label": "Side by side with" },
    h("option", { value: "" }, "Side by side with…"),
    ...options.map((o) => h("option", { value: o.uid }, o.label)),
  ) as HTMLSelectElement;
  select.addEventListener("change", () => {
    if (select.value) onPick(select.value);
  });
  return h("div", { class: "compare-bar" }, select);
}
