// Upload view: drop files or folders, de-identify them here in the browser with the project's
// rules (nothing identifying leaves the device), preview what changes, then store them with
// STOW-RS in batches, with progress and a result per file.
import "./upload.css";
import { type ApiClient, ApiError } from "../api/client";
import { h } from "../dom";
import { type Change, type DeidResult, type DeidRules, type PatientPseudonym, deidentify, isPart10 } from "../deid/index";
import { type Picked, filesOfDrop, filesOfInput } from "./files";
import { batches, stowOutcome } from "./stow";

export interface UploadContext {
  project: string;
  api: ApiClient;
  onUploaded: () => void;
}

type State = "reading" | "ready" | "flagged" | "uploading" | "stored" | "failed";

interface Row {
  path: string;
  state: State;
  reason: string;
  result?: DeidResult;
  tr: HTMLTableRowElement;
  /** The row below it listing the changes (shown on demand). */
  detail: HTMLTableRowElement;
}

const STATE_TEXT: Record<State, string> = {
  reading: "de-identifying…",
  ready: "ready",
  flagged: "refused: may show identifying text in its pixels",
  uploading: "uploading…",
  stored: "stored",
  failed: "failed",
};

class Server {
  private rules: Promise<DeidRules> | null = null;
  private pseudonyms = new Map<string, Promise<PatientPseudonym>>();
  constructor(private readonly ctx: UploadContext) {}

  private url(path: string): string {
    return `${this.ctx.api.base}/api/projects/${encodeURIComponent(this.ctx.project)}/deid/${path}`;
  }

  private async json<T>(response: Response): Promise<T> {
    if (!response.ok) {
      let detail = response.statusText;
      try {
        detail = String(((await response.json()) as { detail?: unknown }).detail ?? detail);
      } catch {
        /* not JSON */
      }
      throw new ApiError(response.status, detail);
    }
    return (await response.json()) as T;
  }

  deidRules(): Promise<DeidRules> {
    this.rules ??= fetch(this.url("rules"), {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    }).then((r) => this.json<DeidRules>(r));
    this.rules.catch(() => (this.rules = null));
    return this.rules;
  }

  /** The pseudonym of a patient key: only the key (a salted hash) is sent, never the ID. */
  pseudonym = (key: string): Promise<PatientPseudonym> => {
    let found = this.pseudonyms.get(key);
    if (!found) {
      found = fetch(this.url("pseudonym"), {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json", ...this.ctx.api.csrfHeaders() },
        credentials: "same-origin",
        body: JSON.stringify({ key }),
      }).then((r) => this.json<PatientPseudonym>(r));
      this.pseudonyms.set(key, found);
      found.catch(() => this.pseudonyms.delete(key));
    }
    return found;
  };
}

function changesTable(changes: Change[]): HTMLElement {
  const body = h("tbody");
  for (const c of changes) {
    const after =
      c.after === null
        ? h("td", { class: "removed" }, "removed")
        : h("td", {}, c.after === "" ? "(empty)" : c.after);
    body.append(
      h(
        "tr",
        { "data-keyword": c.keyword, "data-action": c.action },
        h("td", { class: "mono" }, c.path),
        h("td", {}, c.keyword),
        h("td", {}, c.before === "" ? "(empty)" : c.before),
        after,
      ),
    );
  }
  return h(
    "table",
    { class: "grid changes", "data-testid": "upload-changes" },
    h("thead", {}, h("tr", {}, h("th", {}, "Tag"), h("th", {}, "Attribute"), h("th", {}, "Before"), h("th", {}, "After"))),
    body,
  );
}

export function mountUpload(container: HTMLElement, ctx: UploadContext): () => void {
  container.replaceChildren();
  const server = new Server(ctx);
  const rows: Row[] = [];
  let busy = false;
  let alive = true;

  const fileInput = h("input", { type: "file", multiple: true, "data-testid": "upload-input" });
  const folderInput = h("input", { type: "file", multiple: true, "data-testid": "upload-folder-input" });
  folderInput.setAttribute("webkitdirectory", "");
  const drop = h(
    "div",
    { class: "dropzone", "data-testid": "upload-drop", tabindex: 0 },
    h("strong", {}, "Drop DICOM files or folders here"),
    h("span", {}, " — they are de-identified in this browser before anything is sent."),
    h("div", { class: "pickers" }, h("label", {}, "Files ", fileInput), h("label", {}, "A folder ", folderInput)),
  );
  const allowBurnedIn = h("input", { type: "checkbox", "data-testid": "upload-allow-burned-in" });
  const status = h("p", { "data-testid": "upload-status", class: "status" }, "");
  const error = h("p", { class: "error", "data-testid": "upload-error" }, "");
  const progress = h("progress", { max: 1, value: 0, "data-testid": "upload-progress" });
  const start = h("button", { type: "button", "data-testid": "upload-start", disabled: true }, "Upload");
  const clearButton = h("button", { type: "button", "data-testid": "upload-clear" }, "Clear");
  const done = h("button", { type: "button", "data-testid": "upload-done", hidden: true }, "Open the worklist");
  const tbody = h("tbody");
  const skipped = h("ul", { "data-testid": "upload-skipped", class: "skipped" });
  const skippedHeading = h("h3", { hidden: true }, "Skipped");
  const table = h(
    "table",
    { class: "grid upload", "data-testid": "upload-preview" },
    h(
      "thead",
      {},
      h("tr", {}, h("th", {}, "File"), h("th", {}, "Status"), h("th", {}, "Pseudonym"), h("th", {}, "Changes")),
    ),
    tbody,
  );

  container.append(
    h("h2", {}, `Upload into ${ctx.project}`),
    drop,
    h(
      "label",
      { class: "burned-in" },
      allowBurnedIn,
      " Also upload files that may show identifying text burned into their pixels (ultrasound, screen captures, " +
        "BurnedInAnnotation=YES): headers are de-identified here, pixels are cleaned by the server's OCR only if " +
        "the project's policy cleans pixel data.",
    ),
    h("div", { class: "actions" }, start, clearButton, progress, done),
    status,
    error,
    table,
    skippedHeading,
    skipped,
  );

  function uploadable(): Row[] {
    return rows.filter((r) => r.state === "ready" || (r.state === "flagged" && allowBurnedIn.checked));
  }

  function refresh(): void {
    const count = (s: State) => rows.filter((r) => r.state === s).length;
    const parts = [`${rows.length} file(s)`];
    if (skipped.children.length) parts.push(`${skipped.children.length} skipped`);
    for (const s of ["reading", "ready", "flagged", "stored", "failed"] as State[]) {
      if (count(s)) parts.push(`${count(s)} ${s}`);
    }
    status.textContent = parts.join(", ");
    skippedHeading.hidden = skipped.children.length === 0;
    start.disabled = busy || uploadable().length === 0 || count("reading") > 0;
    start.textContent = `Upload ${uploadable().length} file(s)`;
  }

  function paint(row: Row): void {
    const r = row.result;
    let stateText = row.state === "failed" ? `${STATE_TEXT.failed}: ${row.reason}` : STATE_TEXT[row.state];
    if (row.state === "flagged" && allowBurnedIn.checked) stateText = "ready (burned-in text risk accepted)";
    const statusCell = h("td", { "data-testid": "upload-result", "data-state": row.state }, stateText);
    if (r && r.burnedIn.length) {
      statusCell.append(h("div", { class: "flag", "data-testid": "upload-flag" }, `burned-in text risk: ${r?.burnedIn.join(", ")}`));
    }
    let toggle: HTMLElement = h("span", {}, "");
    if (r) {
      const button = h(
        "button",
        { type: "button", "data-testid": "upload-show-changes", "aria-expanded": row.detail.hidden ? "false" : "true" },
        `${r.changes.length} change(s)`,
      );
      button.addEventListener("click", () => {
        row.detail.hidden = !row.detail.hidden;
        button.setAttribute("aria-expanded", row.detail.hidden ? "false" : "true");
      });
      toggle = button;
      row.detail.replaceChildren(h("td", { colspan: 4 }, changesTable(r.changes)));
    }
    row.tr.replaceChildren(
      h("td", { class: "mono" }, row.path),
      statusCell,
      h("td", { "data-testid": "upload-pseudonym", class: "mono" }, r?.pseudonym ?? ""),
      h("td", {}, toggle),
    );
  }

  function skip(path: string, reason: string): void {
    skipped.append(h("li", { "data-testid": "upload-skipped-file", "data-path": path }, `${path}: ${reason}`));
  }

  async function add(picked: Picked[]): Promise<void> {
    error.textContent = "";
    let rules: DeidRules;
    try {
      rules = await server.deidRules();
    } catch (exc) {
      error.textContent = `Cannot read the project's de-identification rules: ${String(exc)}`;
      return;
    }
    picked.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    for (const p of picked) {
      if (!alive) return;
      let bytes: Uint8Array;
      try {
        bytes = new Uint8Array(await p.file.arrayBuffer());
      } catch (exc) {
        skip(p.path, `cannot be read (${String(exc)})`);
        continue;
      }
      if (!isPart10(bytes)) {
        skip(p.path, "not a DICOM Part 10 file (no DICM preamble)");
        continue;
      }
      const row: Row = {
        path: p.path,
        state: "reading",
        reason: "",
        tr: h("tr", { "data-path": p.path, class: "file" }),
        detail: h("tr", { "data-changes-of": p.path, class: "detail", hidden: true }),
      };
      rows.push(row);
      tbody.append(row.tr, row.detail);
      paint(row);
      refresh();
      try {
        row.result = await deidentify(bytes, rules, server.pseudonym);
        row.state = row.result.burnedIn.length ? "flagged" : "ready";
      } catch (exc) {
        rows.splice(rows.indexOf(row), 1);
        row.tr.remove();
        row.detail.remove();
        skip(p.path, exc instanceof ApiError ? `no pseudonym from the server (${exc.message})` : `cannot be de-identified: ${String((exc as Error).message ?? exc)}`);
        refresh();
        continue;
      }
      paint(row);
      refresh();
    }
  }

  async function upload(): Promise<void> {
    const todo = uploadable();
    if (!todo.length) return;
    busy = true;
    error.textContent = "";
    done.hidden = true;
    refresh();
    const sized = todo.map((row) => ({ row, size: row.result!.bytes.length }));
    const total = sized.reduce((n, s) => n + s.size, 0);
    let sent = 0;
    progress.max = total;
    progress.value = 0;
    for (const batch of batches(sized)) {
      const batchBytes = batch.reduce((n, s) => n + s.size, 0);
      for (const { row } of batch) {
        row.state = "uploading";
        paint(row);
      }
      try {
        const answer = await ctx.api.stow(
          ctx.project,
          batch.map(({ row }) => row.result!.bytes.buffer as ArrayBuffer),
          (loaded, length) => {
            progress.value = sent + (length > 0 ? (batchBytes * loaded) / length : 0);
          },
        );
        const outcome = stowOutcome(answer.body);
        // a project that de-identifies at ingest stores the files under its own UIDs: a
        // response without failures for as many files as were sent stores every one of them
        const allStored = outcome.failed.size === 0 && !outcome.anonymous.length && outcome.stored.size >= batch.length;
        for (const { row } of batch) {
          const uid = row.result!.sopInstanceUID;
          if (outcome.stored.has(uid) || allStored) {
            row.state = "stored";
          } else {
            row.state = "failed";
            row.reason = outcome.failed.get(uid) ?? outcome.anonymous[0] ?? "the server did not report this file";
          }
          paint(row);
        }
      } catch (exc) {
        for (const { row } of batch) {
          row.state = "failed";
          row.reason = exc instanceof ApiError ? exc.message : String(exc);
          paint(row);
        }
      }
      sent += batchBytes;
      progress.value = sent;
      refresh();
    }
    busy = false;
    refresh();
    const failed = todo.filter((r) => r.state === "failed").length;
    if (failed) {
      error.textContent = `${failed} of ${todo.length} file(s) were not stored; see the status column.`;
      done.hidden = false;
    } else {
      ctx.onUploaded();
    }
  }

  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (!event.dataTransfer) return;
    void filesOfDrop(event.dataTransfer).then(add);
  });
  for (const input of [fileInput, folderInput]) {
    input.addEventListener("change", () => {
      const picked = filesOfInput(input);
      input.value = "";
      void add(picked);
    });
  }
  allowBurnedIn.addEventListener("change", () => {
    for (const row of rows) if (row.state === "flagged") paint(row);
    refresh();
  });
  start.addEventListener("click", () => void upload());
  done.addEventListener("click", () => ctx.onUploaded());
  clearButton.addEventListener("click", () => {
    if (busy) return;
    rows.length = 0;
    tbody.replaceChildren();
    skipped.replaceChildren();
    error.textContent = "";
    done.hidden = true;
    progress.value = 0;
    refresh();
  });
  refresh();
  return () => {
    alive = false;
  };
}
