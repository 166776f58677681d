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

/** Frame bytes by image id, each handed to the loader once. */
const pending = new Map<string, Uint8Array>();
let registered = false;

function provider(type: string, imageId: string): unknown {
  if (type !== COMPRESSED_FRAME_DATA) return undefined;
  const pixelData = pending.get(imageId);
  if (!pixelData) return undefined;
  pending.delete(imageId);
  return { transferSyntaxUid: EXPLICIT_LE, pixelData };
}

/** The (SOP instance UID, frame number) of a wadors image id. */
export function frameKey(imageId: string): string | null {
  const match = imageId.match(/\/instances\/([^/]+)\/frames\/(\d+)$/);
  return match ? `${match[1]}/${match[2]}` : null;
}

interface FrameHead {
  sop: string;
  frame: number;
  length: number;
}

/**
 * Reads the records of `GET .../series/{uid}/frames` as they arrive (per frame: a 4-byte
 * little-endian header length, a JSON header `{sop, frame, length}`, the frame's bytes) and
 * hands each complete frame over in a buffer of its own (the loader's message to its decoding
 * worker copies a frame's whole buffer); a record cut short is dropped.
 */
export async function readFrames(
  stream: ReadableStream<Uint8Array>,
  onFrame: (key: string, bytes: Uint8Array) => void,
): Promise<void> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  const prefix = new Uint8Array(4);
  let prefixFill = 0;
  let head: Uint8Array | null = null;
  let headFill = 0;
  let meta: FrameHead | null = null;
  let data: Uint8Array | null = null;
  let dataFill = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    let at = 0;
    while (at < value.length) {
      if (meta && data) {
        const n = Math.min(data.length - dataFill, value.length - at);
        data.set(value.subarray(at, at + n), dataFill);
        dataFill += n;
        at += n;
      } else if (head) {
        const n = Math.min(head.length - headFill, value.length - at);
        head.set(value.subarray(at, at + n), headFill);
        headFill += n;
        at += n;
        if (headFill === head.length) {
          meta = JSON.parse(decoder.decode(head)) as FrameHead;
          data = new Uint8Array(meta.length);
          dataFill = 0;
          head = null;
        }
      } else {
        const n = Math.min(4 - prefixFill, value.length - at);
        prefix.set(value.subarray(at, at + n), prefixFill);
        prefixFill += n;
        at += n;
        if (prefixFill === 4) {
          head = new Uint8Array(new DataView(prefix.buffer).getUint32(0, true));
          headFill = 0;
          prefixFill = 0;
        }
      }
      if (meta && data && dataFill === data.length) {
        onFrame(`${meta.sop}/${meta.frame}`, data);
        meta = null;
        data = null;
      }
    }
  }
}

/**
 * Fetches every frame of a series in one response and registers those of `imageIds` for the
 * loader; resolves to how many were registered (those before a failure: the loader fetches the
 * others frame by frame).
 */
export async function prefetchFrames(url: string, imageIds: string[]): Promise<number> {
  if (!registered) {
    metaData.addProvider(provider as never, PRIORITY);
    registered = true;
  }
  const byKey = new Map<string, string>();
  for (const imageId of imageIds) {
    const key = frameKey(imageId);
    if (key) byKey.set(key, imageId);
  }
  let count = 0;
  try {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok || !response.body) return 0;
    await readFrames(response.body, (key, bytes) => {
      const imageId = byKey.get(key);
      if (imageId) {
        pending.set(imageId, bytes);
        count++;
      }
    });
  } catch {
    // what arrived stays registered; the rest comes frame by frame
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
