// The frames of a whole series fetched in one response, for a volume the browser loads.
//
// Cornerstone's WADO-RS loader asks its metadata store for a frame's bytes (the "compressed frame
// data" registry) before it sends a request: the frames registered here are decoded from memory,
// with the options the volume asks for, and any frame missing (a response cut short, an image id
// not in it) is fetched frame by frame as before. One response instead of one request per frame
// saves the browser and the server most of the per-frame work (see bench/results/viewer.md).
import { metaData, volumeLoader } from "@cornerstonejs/core";
import type { LoadedSeries } from "./series";

const EXPLICIT_LE = "1.2.840.10008.1.2.1";
const COMPRESSED_FRAME_DATA = "compressedFrameData";
/** Ahead of every other metadata provider: the loader asks before any network request. */
const PRIORITY = 100000;

interface PendingFrame {
  buffer: ArrayBuffer;
  offset: number;
  length: number;
}

/** Frame bytes by image id, each handed to the loader once. */
const pending = new Map<string, PendingFrame>();
let registered = false;

function provider(type: string, imageId: string): unknown {
  if (type !== COMPRESSED_FRAME_DATA) return undefined;
  const frame = pending.get(imageId);
  if (!frame) return undefined;
  pending.delete(imageId);
  // a buffer of its own: the message to the decoding worker would otherwise copy the whole response
  const pixelData = new Uint8Array(frame.buffer.slice(frame.offset, frame.offset + frame.length));
  return { transferSyntaxUid: EXPLICIT_LE, pixelData };
}

/** The (SOP instance UID, frame number) of a wadors image id. */
export function frameKey(imageId: string): string | null {
  const match = imageId.match(/\/instances\/([^/]+)\/frames\/(\d+)$/);
  return match ? `${match[1]}/${match[2]}` : null;
}

/**
 * Parses the records of `GET .../series/{uid}/frames` (per frame: a 4-byte little-endian header
 * length, a JSON header `{sop, frame, length}`, the frame's bytes) into byte ranges by key
 * (`sop/frame`); a record cut short ends the parse.
 */
export function parseFrames(buffer: ArrayBuffer): Map<string, PendingFrame> {
  const out = new Map<string, PendingFrame>();
  const view = new DataView(buffer);
  const decoder = new TextDecoder();
  let offset = 0;
  while (offset + 4 <= buffer.byteLength) {
    const headLength = view.getUint32(offset, true);
    if (offset + 4 + headLength > buffer.byteLength) break;
    const head = JSON.parse(decoder.decode(new Uint8Array(buffer, offset + 4, headLength))) as {
      sop: string;
      frame: number;
      length: number;
    };
    const start = offset + 4 + headLength;
    if (start + head.length > buffer.byteLength) break;
    out.set(`${head.sop}/${head.frame}`, { buffer, offset: start, length: head.length });
    offset = start + head.length;
  }
  return out;
}

/**
 * Fetches every frame of a series in one response and registers those of `imageIds` for the
 * loader; resolves to how many were registered (0 when the request fails: the loader then
 * fetches each frame itself).
 */
export async function prefetchFrames(url: string, imageIds: string[]): Promise<number> {
  if (!registered) {
    metaData.addProvider(provider as never, PRIORITY);
    registered = true;
  }
  let buffer: ArrayBuffer;
  try {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) return 0;
    buffer = await response.arrayBuffer();
  } catch {
    return 0;
  }
  const frames = parseFrames(buffer);
  let count = 0;
  for (const imageId of imageIds) {
    const key = frameKey(imageId);
    const frame = key ? frames.get(key) : undefined;
    if (frame) {
      pending.set(imageId, frame);
      count++;
    }
  }
  return count;
}

/** Drops what the loader did not take (the response's memory goes with it). */
export function forgetFrames(imageIds: string[]): void {
  for (const imageId of imageIds) pending.delete(imageId);
}

/**
 * Creates and loads the streaming volume of a series, its frames fetched in one response while
 * the series' metadata is completed; resolves to how many frames came that way.
 */
export async function loadVolume(volumeId: string, series: LoadedSeries): Promise<number> {
  const { imageIds } = series;
  const prefetched = prefetchFrames(series.framesUrl, imageIds);
  await series.complete();
  const volume = await volumeLoader.createAndCacheVolume(volumeId, { imageIds });
  const count = await prefetched;
  await new Promise<void>((resolve) => {
    (volume as unknown as { load: (done: () => void) => void }).load(() => resolve());
  });
  forgetFrames(imageIds);
  return count;
}
