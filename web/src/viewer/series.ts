// A series as Cornerstone sees it: wadors image ids in spatial order, their metadata registered.
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
}

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
  // the loader's initialisation empties its metadata store: initialise before filling it
  await initCornerstone();
  const metadata = sortInstances(await api.seriesMetadata(project, study, series));
  if (metadata.length === 0) throw new Error("the series has no images");
  const root = `${location.origin}${api.dicomweb(project)}/studies/${study}/series/${series}/instances`;
  const imageIds: string[] = [];
  for (const item of metadata) {
    const sop = tagValue(item, "00080018");
    const frames = Number(tagValue(item, "00280008", "1")) || 1;
    for (let frame = 1; frame <= frames; frame++) {
      const imageId = `wadors:${root}/${sop}/frames/${frame}`;
      wadors.metaDataManager.add(imageId, item as never);
      void metadataUtilities.addDicomWebInstance(imageId, item);
      imageIds.push(imageId);
    }
  }
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
  };
}
