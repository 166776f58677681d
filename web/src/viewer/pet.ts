// PET display: a hot colour map, the window in SUVbw, and an SUV readout under the mouse.
// Cornerstone scales PT pixels to SUVbw when its metadata has a scaling module, which
// @cornerstonejs/metadata computes (with @cornerstonejs/calculate-suv) from the instance's
// radiopharmaceutical data, weight, units and times, decay-corrected to the scan start.
import { cache, metaData, utilities, type Types } from "@cornerstonejs/core";
import vtkColorMaps from "@kitware/vtk.js/Rendering/Core/ColorTransferFunction/ColorMaps";

/** The colour map of PET images (black, red, yellow, white: brightest is hottest). */
export const PET_COLORMAP = "Black-Body Radiation";
/** The default PET window, in SUVbw. */
export const PET_WINDOW = { center: 2.5, width: 5 };
/** Fused over a CT, PET below this SUV is transparent. */
export const FUSION_THRESHOLD_SUV = 1;

export function isPet(modality: string): boolean {
  return modality === "PT";
}

/** Whether the image's pixels are SUVbw (PT with a scaling factor from its header). */
export function hasSuv(imageId: string): boolean {
  const scaling = metaData.get("scalingModule", imageId) as { suvbw?: number } | undefined;
  return typeof scaling?.suvbw === "number" && Number.isFinite(scaling.suvbw);
}

/** The PET colour map and SUV window on a stack viewport, or on a volume of a volume viewport. */
export function applyPetDisplay(
  viewport: Types.IStackViewport | Types.IVolumeViewport,
  volumeId?: string,
  opacity = 1,
): void {
  const properties = {
    colormap: { name: PET_COLORMAP, opacity },
    voiRange: { lower: PET_WINDOW.center - PET_WINDOW.width / 2, upper: PET_WINDOW.center + PET_WINDOW.width / 2 },
  };
  if (volumeId) (viewport as Types.IVolumeViewport).setProperties(properties, volumeId);
  else (viewport as Types.IStackViewport).setProperties(properties);
}

/**
 * The PET volume actor of a fusion: the PET colour map over the SUV window, transparent below
 * the fusion threshold and at `opacity` above it (Cornerstone's PET/CT fusion transfer function,
 * which also samples the slice at 1 mm so that the opacity is what shows).
 */
export function fusePetActor(volumeActor: unknown, opacity: number): void {
  utilities.colormap.setColorMapTransferFunctionForVolumeActor({
    volumeActor,
    preset: vtkColorMaps.getPresetByName(PET_COLORMAP),
    opacity,
    threshold: FUSION_THRESHOLD_SUV,
    colorRange: [PET_WINDOW.center - PET_WINDOW.width / 2, PET_WINDOW.center + PET_WINDOW.width / 2],
  });
}

/** The pixel value at a world point of a stack viewport's current image (SUV for scaled PT). */
export function stackValueAt(viewport: Types.IStackViewport, world: Types.Point3): number | null {
  const imageId = viewport.getCurrentImageId();
  const image = imageId ? cache.getImage(imageId) : undefined;
  if (!image) return null;
  const [column, row] = utilities.worldToImageCoords(imageId, world) ?? [];
  if (column === undefined || row === undefined) return null;
  const i = Math.floor(column);
  const j = Math.floor(row);
  if (i < 0 || j < 0 || i >= image.columns || j >= image.rows) return null;
  const index = j * image.columns + i;
  const value = image.voxelManager ? Number(image.voxelManager.getAtIndex(index)) : Number(image.getPixelData()[index]);
  return Number.isFinite(value) ? value : null;
}

/** The voxel value of a cached volume at a world point (nearest voxel), or null outside it. */
export function volumeValueAt(volumeId: string, world: Types.Point3): number | null {
  const volume = cache.getVolume(volumeId);
  if (!volume?.imageData) return null;
  const [i, j, k] = utilities.transformWorldToIndex(volume.imageData, world) as number[];
  const [ni, nj, nk] = volume.dimensions;
  if (i < 0 || j < 0 || k < 0 || i >= ni || j >= nj || k >= nk || !volume.voxelManager) return null;
  const value = Number(volume.voxelManager.getAtIJK(i, j, k));
  return Number.isFinite(value) ? value : null;
}

/**
 * Shows the value under the mouse in `label` and as `data-suv` (or `data-value` when the
 * pixels are not SUV) on the viewport element. `valueAt` reads the viewport's data at a world point.
 */
export function attachReadout(
  element: HTMLElement,
  viewport: () => Types.IViewport | undefined,
  valueAt: (world: Types.Point3) => number | null,
  isSuv: () => boolean,
  label: HTMLElement,
): () => void {
  const move = (event: MouseEvent) => {
    const current = viewport();
    if (!current) return;
    const box = element.getBoundingClientRect();
    const world = current.canvasToWorld([event.clientX - box.left, event.clientY - box.top]);
    const value = valueAt(world);
    const suv = isSuv();
    delete element.dataset.suv;
    delete element.dataset.value;
    if (value === null) {
      label.textContent = "";
      return;
    }
    if (suv) element.dataset.suv = String(value);
    else element.dataset.value = String(value);
    element.dataset.probe = world.map((v) => v.toFixed(1)).join(",");
    label.textContent = suv ? `SUVbw ${value.toFixed(2)}` : `${value.toFixed(0)}`;
  };
  element.addEventListener("mousemove", move);
  return () => element.removeEventListener("mousemove", move);
}
