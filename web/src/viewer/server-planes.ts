// Server-rendered planes for series too large to load into the browser: the viewer API's
// `/render` gives one plane or slab (MIP/MinIP/average) as an image, resampled to square pixels.
import { h } from "../dom";

/** Over this many slices or bytes a series' MPR and slabs are rendered by the server. */
export const MAX_BROWSER_SLICES = 1000;
export const BROWSER_VOLUME_BUDGET = 1024 ** 3;

export interface VolumeInfo {
  shape: [number, number, number];
  spacing: [number, number, number];
  bytes: number;
  window: [number, number];
  planes: Record<"axial" | "coronal" | "sagittal", number>;
}

export type ServerPlaneKind = "axial" | "coronal" | "sagittal";

export function seriesApi(project: string, study: string, series: string): string {
  return `/api/projects/${encodeURIComponent(project)}/studies/${study}/series/${series}`;
}

export async function volumeInfo(project: string, study: string, series: string): Promise<VolumeInfo> {
  const response = await fetch(`${seriesApi(project, study, series)}/volume`, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`volume: HTTP ${response.status}`);
  return (await response.json()) as VolumeInfo;
}

/** One server-rendered viewport: an image, scrolled with the mouse wheel. */
export class ServerPlane {
  readonly image: HTMLImageElement;
  index: number;
  private pending = false;
  private dirty = false;

  constructor(
    readonly element: HTMLElement,
    readonly base: string,
    readonly plane: ServerPlaneKind,
    readonly count: number,
    private readonly state: () => { window: { center: number; width: number }; mode: string; thickness: number },
  ) {
    this.index = Math.floor(count / 2);
    this.image = h("img", { class: "server-plane", alt: `${plane} (server-rendered)`, draggable: "false" });
    element.replaceChildren(this.image);
    element.dataset.server = "true";
    element.addEventListener(
      "wheel",
      (event) => {
        event.preventDefault();
        this.scroll(Math.sign(event.deltaY));
      },
      { passive: false },
    );
    this.image.addEventListener("load", () => {
      element.dataset.status = "ready";
      element.dataset.index = String(this.index);
      this.pending = false;
      if (this.dirty) {
        this.dirty = false;
        this.render();
      }
    });
    this.image.addEventListener("error", () => {
      element.dataset.status = "error";
      this.pending = false;
    });
  }

  scroll(step: number): void {
    this.index = Math.min(this.count - 1, Math.max(0, this.index + step));
    this.render();
  }

  url(): string {
    const { window, mode, thickness } = this.state();
    const box = this.element.getBoundingClientRect();
    const size = Math.max(64, Math.round(Math.max(box.width, box.height) * (window_devicePixelRatio())));
    const params = new URLSearchParams({
      plane: this.plane,
      index: String(this.index),
      window: `${window.center},${window.width}`,
      format: "jpeg",
      size: String(size),
    });
    if (mode !== "none") {
      params.set("mode", mode);
      params.set("slab", String(thickness));
    }
    return `${this.base}/render?${params}`;
  }

  /** Requests the current image; while one loads, only the latest state is requested next. */
  render(): void {
    if (this.pending) {
      this.dirty = true;
      return;
    }
    this.pending = true;
    this.element.dataset.status = "loading";
    this.image.src = this.url();
  }
}

function window_devicePixelRatio(): number {
  return Math.min(2, globalThis.devicePixelRatio || 1);
}
