// A study: its series as thumbnails (server-rendered), and the viewer on the chosen series.
import { tagValue } from "../api/client";
import { h } from "../dom";
import { mountAnnotationPanel, type AnnotationPanel } from "../annotate/panel";
import type { AppContext } from "../main";
import { mountSegmentationPanel } from "../viewer/segmentations";
import { loadSeries, preloadImage } from "../viewer/series";
import { initCornerstone } from "../viewer/setup";
import { LAYOUTS, Viewer, type Layout } from "../viewer/viewer";
import { mountTaskBar } from "../tasks/views";
import { mountShapesPanel, type ShapesPanel } from "../shapes/panel";
import { SyncView, compareControl } from "../viewer/sync";

declare global {
  interface Window {
    /** The open viewer (automation hook for the browser tests). */
    carinaViewer?: Viewer;
    /** The open side-by-side view (automation hook for the browser tests). */
    carinaSync?: SyncView;
  }
}

export async function mountStudy(
  container: HTMLElement,
  ctx: AppContext,
  project: string,
  study: string,
  query: URLSearchParams,
): Promise<() => void> {
  const list = h("div", { class: "series-list", "data-testid": "series-list" });
  const stage = h("div", { class: "stage", "data-testid": "stage" });
  const title = h("h2", { "data-testid": "study-title" }, "Study");
  const back = h("a", { href: `/p/${encodeURIComponent(project)}`, "data-link": "" }, "‹ Worklist");
  container.append(h("div", { class: "row" }, back, title), h("div", { class: "study" }, list, stage));
  // a task part open for annotation or review (?task=&annotator=): its instructions and actions
  const taskId = Number(query.get("task"));
  if (taskId) void mountTaskBar(container, ctx, project, taskId, query.get("annotator") ?? ctx.me.name);
  let viewer: Viewer | null = null;
  let annotations: AnnotationPanel | null = null;
  let shapes: ShapesPanel | null = null;
  let disposed = false;
  let syncView: SyncView | null = null;

  performance.mark("carina:study-open");
  // the study and its series requested side by side, the viewer's start-up done meanwhile
  const listed = Promise.all([
    ctx.api.qido(project, "studies", { StudyInstanceUID: study }),
    ctx.api.qido(project, `studies/${study}/series`),
  ]);
  void initCornerstone();
  const [studies, series] = await listed;
  performance.mark("carina:study-series");
  const info = studies[0];
  if (info) {
    title.textContent = [tagValue(info, "00100010"), tagValue(info, "00080020"), tagValue(info, "00081030")]
      .filter(Boolean)
      .join(" · ");
  }
  series.sort((a, b) => Number(tagValue(a, "00200011", "0")) - Number(tagValue(b, "00200011", "0")));
  const root = ctx.api.dicomweb(project);

  const closeSync = () => {
    syncView?.destroy();
    syncView = null;
    window.carinaSync = undefined;
  };
  // two series side by side (?compare=): synchronized scrolling, PET fusion
  const compare = async (uid: string, other: string) => {
    annotations?.destroy();
    annotations = null;
    shapes?.destroy();
    shapes = null;
    viewer?.destroy();
    viewer = null;
    window.carinaViewer = undefined;
    closeSync();
    const params = new URLSearchParams(location.search);
    params.set("series", uid);
    params.set("compare", other);
    history.replaceState(null, "", `${location.pathname}?${params}`);
    stage.replaceChildren(h("p", { "data-testid": "viewer-loading" }, "Loading series…"));
    try {
      const [a, b] = await Promise.all([loadSeries(ctx.api, project, study, uid), loadSeries(ctx.api, project, study, other)]);
      if (disposed) return;
      stage.replaceChildren();
      syncView = await SyncView.create(stage, a, b, () => void open(uid));
      window.carinaSync = syncView;
    } catch (error) {
      stage.replaceChildren(h("p", { class: "error", "data-testid": "viewer-error" }, `Cannot show the series: ${String(error)}`));
    }
  };

  const open = async (uid: string) => {
    closeSync();
    annotations?.destroy();
    annotations = null;
    shapes?.destroy();
    shapes = null;
    viewer?.destroy();
    viewer = null;
    window.carinaViewer = undefined;
    for (const card of list.querySelectorAll<HTMLElement>("[data-series]")) {
      card.classList.toggle("selected", card.dataset.series === uid);
    }
    const params = new URLSearchParams(location.search);
    params.set("series", uid);
    params.delete("compare");
    history.replaceState(null, "", `${location.pathname}?${params}`);
    stage.replaceChildren(h("p", { "data-testid": "viewer-loading" }, "Loading series…"));
    try {
      const loaded = await loadSeries(ctx.api, project, study, uid);
      performance.mark("carina:series-loaded");
      if (disposed) return;
      preloadImage(loaded);
      const others = series
        .filter((s) => tagValue(s, "0020000E") !== uid && !["SEG", "SR", "RTSTRUCT"].includes(tagValue(s, "00080060")))
        .map((s) => ({ uid: tagValue(s, "0020000E"), label: `${tagValue(s, "00080060")} #${tagValue(s, "00200011")} ${tagValue(s, "0008103E")}` }));
      stage.replaceChildren(compareControl(others, (other) => void compare(uid, other)));
      const requested = (new URLSearchParams(location.search).get("layout") ?? "1x1") as Layout;
      viewer = await Viewer.create(stage, loaded, {
        project,
        layout: requested in LAYOUTS ? requested : "1x1",
        serverPlanes: new URLSearchParams(location.search).get("planes") === "server",
        onLayoutChange: (layout) => {
          const search = new URLSearchParams(location.search);
          search.set("layout", layout);
          history.replaceState(null, "", `${location.pathname}?${search}`);
        },
      });
      window.carinaViewer = viewer;
      void mountSegmentationPanel(viewer.side, viewer, project);
      // label editing: the segmentation being edited is kept in the URL (?seg=) across reloads
      const segParam = Number(new URLSearchParams(location.search).get("seg")) || null;
      const editor = mountAnnotationPanel(viewer.side, viewer, ctx.api, project, {
        open: segParam,
        autosaveSeconds: Number(new URLSearchParams(location.search).get("autosave")) || 0,
        onOpen: (seg) => {
          const search = new URLSearchParams(location.search);
          if (seg) search.set("seg", String(seg));
          else search.delete("seg");
          history.replaceState(null, "", `${location.pathname}?${search}`);
        },
      });
      // geometric annotations, below the label editor (whose panel is in the side bar at once);
      // drawing a shape takes the primary button from the editor's tools
      shapes = mountShapesPanel(viewer.side, viewer, ctx.api, project, { onActivate: () => annotations?.setTool(null, false) });
      annotations = await editor;
    } catch (error) {
      stage.replaceChildren(h("p", { class: "error", "data-testid": "viewer-error" }, `Cannot show the series: ${String(error)}`));
    }
  };

  for (const item of series) {
    const uid = tagValue(item, "0020000E");
    const modality = tagValue(item, "00080060");
    const count = tagValue(item, "00201209");
    const card = h(
      "button",
      { type: "button", class: "series-card", "data-series": uid, "data-modality": modality },
      h("img", {
        src: `${root}/studies/${study}/series/${uid}/thumbnail?viewport=128,128`,
        alt: `${modality} series ${tagValue(item, "00200011")}`,
        loading: "lazy",
        width: "128",
        height: "128",
      }),
      h("span", {}, `${modality} #${tagValue(item, "00200011")} ${tagValue(item, "0008103E")}`),
      h("span", { class: "muted" }, `${count} images`),
    );
    card.addEventListener("click", () => void open(uid));
    list.append(card);
  }
  const wanted = query.get("series");
  const comparedWith = query.get("compare");
  const first = series.find((s) => tagValue(s, "0020000E") === wanted) ?? series.find((s) => tagValue(s, "00080060") !== "SEG");
  if (first && comparedWith) void compare(tagValue(first, "0020000E"), comparedWith);
  else if (first) void open(tagValue(first, "0020000E"));
  else stage.replaceChildren(h("p", {}, "The study has no image series."));

  return () => {
    disposed = true;
    closeSync();
    annotations?.destroy();
    shapes?.destroy();
    viewer?.destroy();
    window.carinaViewer = undefined;
  };
}
