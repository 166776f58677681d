// Placeholder of the upload view (drag-and-drop, in-browser de-identification and STOW-RS).
import type { ApiClient } from "../api/client";

export interface UploadContext {
  project: string;
  api: ApiClient;
  onUploaded: () => void;
}

export function mountUpload(container: HTMLElement, ctx: UploadContext): void {
  container.replaceChildren();
  const note = document.createElement("p");
  note.dataset.testid = "upload-placeholder";
  note.textContent = `Upload into ${ctx.project}: not available yet.`;
  container.append(note);
}
