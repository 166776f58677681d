// One-time initialisation of Cornerstone3D (core, tools, DICOM image loader).
import { init as coreInit } from "@cornerstonejs/core";
import { init as dicomLoaderInit } from "@cornerstonejs/dicom-image-loader";
import {
  AngleTool,
  BidirectionalTool,
  CrosshairsTool,
  EllipticalROITool,
  LengthTool,
  PanTool,
  StackScrollTool,
  TrackballRotateTool,
  WindowLevelTool,
  ZoomTool,
  addTool,
  init as toolsInit,
} from "@cornerstonejs/tools";

const MULTIPART_FRAMES = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';

let ready: Promise<void> | null = null;

export function initCornerstone(): Promise<void> {
  ready ??= (async () => {
    coreInit();
    // same-origin requests carry the session cookie: nothing to add to the loader's requests
    dicomLoaderInit({
      maxWebWorkers: Math.max(1, Math.min(2, navigator.hardwareConcurrency - 1)),
      // one frame per request: asked for as a single part first, which Carina answers with the
      // frame's bytes alone and the loader takes without searching them for a multipart boundary
      beforeSend: () => ({ Accept: `application/octet-stream; transfer-syntax=*, ${MULTIPART_FRAMES}` }),
    });
    toolsInit();
    for (const tool of [
      WindowLevelTool,
      PanTool,
      ZoomTool,
      StackScrollTool,
      LengthTool,
      AngleTool,
      EllipticalROITool,
      BidirectionalTool,
      CrosshairsTool,
      TrackballRotateTool,
    ]) {
      addTool(tool);
    }
  })();
  return ready;
}
