// The pieces the editing panel's own tools (polygon and bucket fill, islands, interpolation, click
// region growing) share: a click tool for Cornerstone's tool groups, the series' voxel grid in
// world coordinates with its Hounsfield units, and undoable writes to the labelmap images through
// Cornerstone's history (DefaultHistoryMemo), so undo/redo treats them like the brush's strokes.
import { cache, imageLoader, metaData, utilities as coreUtilities, type Types } from "@cornerstonejs/core";
import { BaseTool, segmentation } from "@cornerstonejs/tools";
import type { Dims } from "./ops";

type ClickHandler = (toolName: string, world: Types.Point3) => void;

/**
 * A tool that hands the world position of a primary-button press to the panel (bucket fill,
 * region growing): Cornerstone's PaintFill fills by label value, not by the image's HU.
 */
export class LabelClickTool extends BaseTool {
  static toolName = "CarinaLabelClick";
  static handler: ClickHandler | null = null;

  constructor(toolProps = {}, defaultToolProps = { supportedInteractionTypes: ["Mouse", "Touch"] }) {
    super(toolProps, defaultToolProps as never);
  }

  preMouseDownCallback = (evt: CustomEvent<{ currentPoints: { world: Types.Point3 } }>): boolean => {
    LabelClickTool.handler?.(this.toolName, evt.detail.currentPoints.world);
    return true;
  };
}

interface ImagePlane {
  rowCosines: number[];
  columnCosines: number[];
  imagePositionPatient: number[];
}

/** A voxel of the series: slice k (series order), row, column and its flat index in the label map. */
export interface Voxel {
  k: number;
  row: number;
  column: number;
  index: number;
}

/** The series' voxel grid: world (LPS mm) to voxel, and the slices' Hounsfield units. */
export class SeriesGrid {
  readonly dims: Dims;
  private readonly normal: number[];
  private readonly positions: number[];

  constructor(
    readonly imageIds: string[],
    rows: number,
    columns: number,
  ) {
    this.dims = [imageIds.length, rows, columns];
    const planes = imageIds.map((id) => metaData.get("imagePlaneModule", id) as ImagePlane);
    const [a, b, c] = planes[0].rowCosines;
    const [d, e, f] = planes[0].columnCosines;
    this.normal = [b * f - c * e, c * d - a * f, a * e - b * d];
    this.positions = planes.map((p) => dot(p.imagePositionPatient, this.normal));
  }

  /** The voxel holding a world point (the nearest slice), or null outside the grid. */
  voxelAt(world: ArrayLike<number>): Voxel | null {
    const k = this.sliceAt(world);
    const [x, y] = this.imageCoords(k, world);
    const [, rows, columns] = this.dims;
    const row = Math.floor(y);
    const column = Math.floor(x);
    if (row < 0 || row >= rows || column < 0 || column >= columns) return null;
    return { k, row, column, index: (k * rows + row) * columns + column };
  }

  /** The slice nearest to a world point. */
  sliceAt(world: ArrayLike<number>): number {
    const along = dot(world, this.normal);
    let k = 0;
    for (let i = 1; i < this.positions.length; i++) {
      if (Math.abs(this.positions[i] - along) < Math.abs(this.positions[k] - along)) k = i;
    }
    return k;
  }

  /** Image coordinates [x, y] on slice k (pixel (c, r) covers [c, c+1) x [r, r+1)). */
  imageCoords(k: number, world: ArrayLike<number>): [number, number] {
    const point = coreUtilities.worldToImageCoords(this.imageIds[k], Array.from(world) as Types.Point3);
    if (!point) throw new Error(`no image plane for slice ${k}`);
    return [point[0], point[1]];
  }

  /** Slice k's Hounsfield units (rows x columns), loading the image when it is not cached. */
  async hu(k: number): Promise<Float32Array> {
    const imageId = this.imageIds[k];
    const image = cache.getImage(imageId) ?? (await imageLoader.loadAndCacheImage(imageId));
    const data = (image.voxelManager ? image.voxelManager.getScalarData() : image.getPixelData()) as ArrayLike<number>;
    const out = Float32Array.from(data);
    // the DICOM loader rescales on decoding (preScale); otherwise apply the modality LUT here
    if (!image.preScale?.scaled && (image.slope !== 1 || image.intercept !== 0)) {
      for (let i = 0; i < out.length; i++) out[i] = out[i] * image.slope + image.intercept;
    }
    return out;
  }

  /** The Hounsfield units of slices `ks` (loaded in parallel). */
  async volumeHu(ks: number[]): Promise<Map<number, Float32Array>> {
    const slices = await Promise.all(ks.map((k) => this.hu(k)));
    return new Map(ks.map((k, i) => [k, slices[i]]));
  }
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

/** The labelmap images of a segmentation being edited, one per slice in the series' order. */
export class LabelImages {
  readonly plane: number;

  constructor(
    readonly segmentationId: string,
    readonly imageIds: string[],
    readonly dims: Dims,
  ) {
    this.plane = dims[1] * dims[2];
  }

  private voxels(k: number): Types.IVoxelManager<number> {
    const image = cache.getImage(this.imageIds[k]);
    if (!image?.voxelManager) throw new Error(`labelmap image of slice ${k} is not in the cache`);
    return image.voxelManager as Types.IVoxelManager<number>;
  }

  /** The whole label map (a copy), as on the wire (16-bit labelmap images give a Uint16Array). */
  values(): Uint8Array | Uint16Array {
    const wide = this.voxels(0).getScalarData() instanceof Uint16Array;
    const out = wide ? new Uint16Array(this.dims[0] * this.plane) : new Uint8Array(this.dims[0] * this.plane);
    for (let k = 0; k < this.dims[0]; k++) out.set(this.voxels(k).getScalarData() as ArrayLike<number>, k * this.plane);
    return out;
  }

  /** Slice k's labels (a copy). */
  slice(k: number): Uint16Array {
    return Uint16Array.from(this.voxels(k).getScalarData() as ArrayLike<number>);
  }

  /**
   * Sets `value` at the voxels (flat indices) whose current label `keep` does not protect, as one
   * step of Cornerstone's undo history; returns how many voxels changed.
   */
  write(indices: Iterable<number>, value: number, keep: (label: number) => boolean): number {
    const changed: number[] = [];
    const before: number[] = [];
    const slices = new Set<number>();
    for (const index of indices) {
      const k = Math.floor(index / this.plane);
      const voxels = this.voxels(k);
      const at = index - k * this.plane;
      const old = voxels.getAtIndex(at) as number;
      if (old === value || keep(old)) continue;
      voxels.setAtIndex(at, value);
      changed.push(index);
      before.push(old);
      slices.add(k);
    }
    if (!changed.length) return 0;
    const modified = [...slices].sort((a, b) => a - b);
    const apply = (undo: boolean) => {
      changed.forEach((index, i) => {
        const k = Math.floor(index / this.plane);
        this.voxels(k).setAtIndex(index - k * this.plane, undo ? before[i] : value);
      });
      segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(this.segmentationId, modified);
    };
    coreUtilities.HistoryMemo.DefaultHistoryMemo.push({ id: coreUtilities.uuidv4(), restoreMemo: (undo?: boolean) => apply(undo !== false) });
    segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(this.segmentationId, modified);
    return changed.length;
  }
}

/** A region from the server's click region growing: a block of the grid placed at `offset`. */
export interface GrownBlock {
  offset: [number, number, number];
  shape: [number, number, number];
  block: Uint8Array;
  voxels: number;
}

/** The flat label-map indices of a grown block's voxels. */
export function blockIndices(grown: GrownBlock, dims: Dims): number[] {
  const [, rows, columns] = dims;
  const [k0, r0, c0] = grown.offset;
  const [nk, nr, nc] = grown.shape;
  const out: number[] = [];
  for (let k = 0; k < nk; k++) {
    for (let r = 0; r < nr; r++) {
      for (let c = 0; c < nc; c++) {
        if (grown.block[(k * nr + r) * nc + c]) out.push(((k0 + k) * rows + r0 + r) * columns + c0 + c);
      }
    }
  }
  return out;
}
