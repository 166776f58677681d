// The worklist: QIDO-RS study search of a project, with filters, sorting and paging.
import { tagValue, type DicomJson } from "../api/client";
import { h } from "../dom";
import type { AppContext } from "../main";

const PAGE = 25;

interface Column {
  key: string;
  title: string;
  tag: string;
  format?: (value: string) => string;
}

const COLUMNS: Column[] = [
  { key: "name", title: "Patient", tag: "00100010" },
  { key: "id", title: "Patient ID", tag: "00100020" },
  { key: "date", title: "Date", tag: "00080020", format: formatDate },
  { key: "modality", title: "Modality", tag: "00080061" },
  { key: "description", title: "Description", tag: "00081030" },
  { key: "series", title: "Series", tag: "00201206" },
  { key: "instances", title: "Images", tag: "00201208" },
];

function formatDate(value: string): string {
  return /^\d{8}$/.test(value) ? `${value.slice(0, 4)}-${value.slice(4, 6)}-${value.slice(6)}` : value;
}

function modalities(item: DicomJson): string {
  return (item["00080061"]?.Value ?? []).map(String).join("/");
}

/** The QIDO-RS parameters of the form's filters (wildcards for the text fields). */
export function qidoParams(filters: Record<string, string>): Record<string, string> {
  const params: Record<string, string> = {};
  const text = (value: string) => (/[*?]/.test(value) ? value : `*${value}*`);
  if (filters.name) params.PatientName = text(filters.name);
  if (filters.id) params.PatientID = text(filters.id);
  if (filters.description) params.StudyDescription = text(filters.description);
  if (filters.modality) params.ModalitiesInStudy = filters.modality;
  const from = (filters.from ?? "").replaceAll("-", "");
  const to = (filters.to ?? "").replaceAll("-", "");
  if (from || to) params.StudyDate = from === to ? from : `${from}-${to}`;
  return params;
}

export function mountWorklist(container: HTMLElement, ctx: AppContext, project: string, query: URLSearchParams): void {
  const filters: Record<string, string> = {};
  for (const key of ["name", "id", "description", "modality", "from", "to"]) filters[key] = query.get(key) ?? "";
  let sortKey = query.get("sort") ?? "date";
  let descending = query.get("order") !== "asc";
  let page = Number(query.get("page") ?? "0") || 0;

  const inputs: Record<string, HTMLInputElement | HTMLSelectElement> = {
    name: h("input", { placeholder: "Patient name / pseudonym", "data-testid": "filter-name" }),
    id: h("input", { placeholder: "Patient ID", "data-testid": "filter-id" }),
    description: h("input", { placeholder: "Description", "data-testid": "filter-description" }),
    modality: h(
      "select",
      { "data-testid": "filter-modality" },
      ...["", "CT", "MR", "PT", "CR", "DX", "US", "SEG", "SM"].map((m) => h("option", { value: m }, m || "Any modality")),
    ),
    from: h("input", { type: "date", "data-testid": "filter-from", "aria-label": "From" }),
    to: h("input", { type: "date", "data-testid": "filter-to", "aria-label": "To" }),
  };
  for (const [key, input] of Object.entries(inputs)) input.value = filters[key];
  const form = h("form", { class: "filters", "data-testid": "worklist-filters" }, ...Object.values(inputs),
    h("button", { type: "submit", "data-testid": "search" }, "Search"));
  const status = h("span", { class: "muted", "data-testid": "worklist-status" });
  const body = h("tbody");
  const head = h("tr");
  const table = h("table", { class: "grid", "data-testid": "worklist" }, h("thead", {}, head), body);
  const prev = h("button", { type: "button", "data-testid": "page-prev" }, "‹ Previous");
  const next = h("button", { type: "button", "data-testid": "page-next" }, "Next ›");
  const pageLabel = h("span", { "data-testid": "page" });
  container.append(
    h("div", { class: "row" }, h("h2", {}, "Worklist"), status),
    form,
    table,
    h("div", { class: "pager" }, prev, pageLabel, next),
  );

  let rows: DicomJson[] = [];
  const syncUrl = () => {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(filters)) if (value) search.set(key, value);
    if (sortKey !== "date") search.set("sort", sortKey);
    if (!descending) search.set("order", "asc");
    if (page) search.set("page", String(page));
    const url = `${location.pathname}${[...search].length ? `?${search}` : ""}`;
    history.replaceState(null, "", url);
  };

  const renderHead = () => {
    head.replaceChildren(
      ...COLUMNS.map((column) => {
        const arrow = column.key === sortKey ? (descending ? " ▼" : " ▲") : "";
        const th = h("th", { "data-sort": column.key }, column.title + arrow);
        th.addEventListener("click", () => {
          if (sortKey === column.key) descending = !descending;
          else {
            sortKey = column.key;
            descending = column.key === "date";
          }
          syncUrl();
          renderRows();
        });
        return th;
      }),
    );
  };

  const cell = (item: DicomJson, column: Column) => {
    const raw = column.key === "modality" ? modalities(item) : tagValue(item, column.tag);
    return column.format ? column.format(raw) : raw;
  };

  const renderRows = () => {
    renderHead();
    const column = COLUMNS.find((c) => c.key === sortKey) ?? COLUMNS[2];
    const numeric = column.key === "series" || column.key === "instances";
    const sorted = [...rows].sort((a, b) => {
      const x = cell(a, column);
      const y = cell(b, column);
      const order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return descending ? -order : order;
    });
    body.replaceChildren(
      ...sorted.map((item) => {
        const study = tagValue(item, "0020000D");
        const href = `/p/${encodeURIComponent(project)}/study/${encodeURIComponent(study)}`;
        return h(
          "tr",
          { "data-study": study },
          ...COLUMNS.map((c, i) =>
            h("td", { "data-col": c.key }, i === 0 ? h("a", { href, "data-link": "" }, cell(item, c) || "(no name)") : cell(item, c)),
          ),
        );
      }),
    );
  };

  const load = async () => {
    status.textContent = "Searching…";
    try {
      const found = await ctx.api.qido(project, "studies", {
        ...qidoParams(filters),
        limit: String(PAGE + 1),
        offset: String(page * PAGE),
        includefield: "00081030,00201206,00201208,00080061",
      });
      const more = found.length > PAGE;
      rows = found.slice(0, PAGE);
      prev.disabled = page === 0;
      next.disabled = !more;
      pageLabel.textContent = `Page ${page + 1}`;
      status.textContent = `${rows.length}${more ? "+" : ""} studies`;
      renderRows();
    } catch (error) {
      status.textContent = `Search failed: ${String(error)}`;
    }
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    for (const [key, input] of Object.entries(inputs)) filters[key] = input.value.trim();
    page = 0;
    syncUrl();
    void load();
  });
  prev.addEventListener("click", () => {
    page = Math.max(0, page - 1);
    syncUrl();
    void load();
  });
  next.addEventListener("click", () => {
    page += 1;
    syncUrl();
    void load();
  });
  void load();
}
