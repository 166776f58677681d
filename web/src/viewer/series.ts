// A series as Cornerstone sees it: wadors image ids in spatial order, their metadata registered.
import { Enums, imageLoader, metaData } from "@cornerstonejs/core";
import { wadors } from "@cornerstonejs/dicom-image-loader";
import { utilities as metadataUtilities } from "@cornerstonejs/metadata";
import type { ApiClient, DicomJson } from "../api/client";
import { tagValue } from "../api/client";
import { initCornerstone } from "./setup";

export interface LoadedSeries {
  study: string;
  series: string;
  imageIds: string[];
  rows: number;
  columns: number;
  slices: number;
  /** PixelSpacing: [row spacing, column spacing] in mm. */
  pixelSpacing: [number, number];
  modality: string;
  description: string;
  /** Bytes the volume would take in browser memory (float32 voxels). */
  volumeBytes: number;
  /** The default window from the header, when it has one. */
  window: { center: number; width: number } | null;
  /** Every frame of the series in one response (see frames.ts). */
  framesUrl: string;
  /**
   * Registers every image's metadata with Cornerstone's metadata store as well (the middle
   * image's is registered at once) and settles when done; started by the first caller. What goes
   * beyond the first image (volumes, label maps, side by side views) waits for it.
   */
  complete: () => Promise<void>;
}

/** The image a stack opens on: the middle one (preloaded and registered first). */
export function openingIndex(count: number): number {
  return Math.floor(count / 2);
}

/** Images whose metadata is naturalized in one task (see {@link LoadedSeries.complete}). */
const NATURALIZE_CHUNK = 250;

function numbers(item: DicomJson, tag: string): number[] {
  return (item[tag]?.Value ?? []).map(Number);
}

/** The series' instances with pixels, sorted along the slice normal (then instance number). */
export function sortInstances(instances: DicomJson[]): DicomJson[] {
  const withPixels = instances.filter((item) => numbers(item, "00280010").length > 0);
  const orientation = numbers(withPixels[0] ?? {}, "00200037");
  let normal: number[] | null = null;
  if (orientation.length === 6) {
    const [a, b, c, d, e, f] = orientation;
    normal = [b * f - c * e, c * d - a * f, a * e - b * d];
  }
  const key = (item: DicomJson): number => {
    const position = numbers(item, "00200032");
    if (normal && position.length === 3) {
      return position[0] * normal[0] + position[1] * normal[1] + position[2] * normal[2];
    }
    return numbers(item, "00200013")[0] ?? 0;
  };
  return [...withPixels].sort((x, y) => key(x) - key(y));
}

export async function loadSeries(
  api: ApiClient,
  project: string,
  study: string,
  series: string,
): Promise<LoadedSeries> {
  // the loader's initialisation empties its metadata store: initialise before filling it (the
  // metadata is on its way meanwhile)
  const fetched = api.seriesMetadata(project, study, series);
  await initCornerstone();
  const raw = await fetched;
  performance.mark("carina:metadata-fetched");
  const metadata = sortInstances(raw);
  if (metadata.length === 0) throw new Error("the series has no images");
  const root = `${location.origin}${api.dicomweb(project)}/studies/${study}/series/${series}/instances`;
  const imageIds: string[] = [];
  const items: DicomJson[] = [];
  for (const item of metadata) {
    const sop = tagValue(item, "00080018");
    const frames = Number(tagValue(item, "00280008", "1")) || 1;
    for (let frame = 1; frame <= frames; frame++) {
      const imageId = `wadors:${root}/${sop}/frames/${frame}`;
      wadors.metaDataManager.add(imageId, item as never);
      imageIds.push(imageId);
      items.push(item);
    }
  }
  // the naturalized copies take most of the registration time (about 0.15 ms an image): the
  // middle image's now, the others once asked for (after the first image), in slices of tasks
  const middle = openingIndex(imageIds.length);
  if (imageIds.length) void metadataUtilities.addDicomWebInstance(imageIds[middle], items[middle]);
  let completed: Promise<void> | null = null;
  const complete = () =>
    (completed ??= new Promise<void>((resolve) => {
      let next = 0;
      const step = () => {
        const end = Math.min(imageIds.length, next + NATURALIZE_CHUNK);
        for (; next < end; next++) {
          if (next !== middle) void metadataUtilities.addDicomWebInstance(imageIds[next], items[next]);
        }
        if (next < imageIds.length) setTimeout(step, 0);
        else resolve();
      };
      step();
    }));
  const first = metadata[0];
  const rows = Number(tagValue(first, "00280010"));
  const columns = Number(tagValue(first, "00280011"));
  const spacing = numbers(first, "00280030");
  const center = numbers(first, "00281050")[0];
  const width = numbers(first, "00281051")[0];
  return {
    study,
    series,
    imageIds,
    rows,
    columns,
    slices: imageIds.length,
    pixelSpacing: spacing.length === 2 ? [spacing[0], spacing[1]] : [1, 1],
    modality: tagValue(first, "00080060"),
    description: tagValue(first, "0008103E"),
    volumeBytes: rows * columns * imageIds.length * 4,
    window: Number.isFinite(center) && Number.isFinite(width) && width > 0 ? { center, width } : null,
    framesUrl: `/api/projects/${encodeURIComponent(project)}/studies/${study}/series/${series}/frames`,
    complete,
  };
}

/**
 * Start loading the image the stack viewport opens on (the middle one) while the viewer is being
 * created, with the options the stack viewport loads it with: it takes the same cached image.
 */
export function preloadImage(series: LoadedSeries, index = openingIndex(series.imageIds.length)): void {
  const imageId = series.imageIds[index];
  if (!imageId) return;
  const { transferSyntaxUID } = (metaData.get(Enums.MetadataModules.TRANSFER_SYNTAX, imageId) ?? {}) as { transferSyntaxUID?: string };
  imageLoader
    .loadAndCacheImage(imageId, {
      useRGBA: false,
      transferSyntaxUID,
      priority: 5,
      requestType: Enums.RequestType.Interaction,
      additionalDetails: { imageId, imageIdIndex: index },
    } as never)
    .then(() => performance.mark("carina:first-image-loaded"))
    .catch(() => {
      // the stack viewport loads it again and reports what fails
    });
}
