// Carina web: login, project switcher, worklist, study view, viewer, upload, jobs.
import "./style.css";
import { ApiClient, ApiError, type Me, type Project } from "./api/client";
import { clear, h } from "./dom";
import { Router } from "./router";
import { mountUpload } from "./upload/index";
import { mountLogin } from "./views/login";
import { mountWorklist } from "./views/worklist";
import { mountStudy } from "./views/study";
import { mountJobs } from "./views/jobs";
import { mountDashboard, mountMyTasks, mountNewTask, mountReview } from "./tasks/views";

export interface AppContext {
  api: ApiClient;
  router: Router;
  me: Me;
  projects: Project[];
}

const root = document.getElementById("app") as HTMLElement;
const api = new ApiClient();
const router = new Router();
let session: { me: Me; projects: Project[] } | null = null;
let unmount: (() => void) | null = null;

async function ensureSession(): Promise<{ me: Me; projects: Project[] } | null> {
  if (session) return session;
  try {
    const me = await api.me();
    const projects = await api.projects();
    session = { me, projects };
    return session;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return null;
    throw error;
  }
}

/** Renders the shell (header with the project switcher) and returns its main element. */
function shell(ctx: AppContext, project: string | null, active: string): HTMLElement {
  unmount?.();
  unmount = null;
  const switcher = h("select", { "data-testid": "project-switcher", "aria-label": "Project" });
  for (const p of ctx.projects) {
    const option = h("option", { value: p.name }, p.title || p.name);
    if (p.name === project) option.selected = true;
    switcher.append(option);
  }
  switcher.addEventListener("change", () => router.go(`/p/${encodeURIComponent(switcher.value)}`));
  const nav = h("nav", { class: "nav" });
  if (project) {
    const base = `/p/${encodeURIComponent(project)}`;
    for (const [name, href] of [
      ["Worklist", base],
      ["Upload", `${base}/upload`],
      ["Jobs", `${base}/jobs`],
      ["My tasks", `${base}/tasks`],
      ["Review", `${base}/review`],
      ["Dashboard", `${base}/dashboard`],
    ]) {
      nav.append(h("a", { href, "data-link": "", class: name === active ? "active" : "" }, name));
    }
  }
  const logout = h("button", { type: "button", "data-testid": "logout" }, "Sign out");
  logout.addEventListener("click", async () => {
    await api.logout().catch(() => undefined);
    session = null;
    router.go("/login");
  });
  const main = h("main", { class: "main" });
  clear(root).append(
    h(
      "header",
      { class: "topbar" },
      h("span", { class: "brand" }, "Carina"),
      switcher,
      nav,
      h("span", { class: "spacer" }),
      h("span", { class: "user", "data-testid": "user-name" }, ctx.me.name),
      logout,
    ),
    main,
  );
  return main;
}

function guarded(
  render: (ctx: AppContext, params: Record<string, string>, query: URLSearchParams) => void | (() => void) | Promise<void | (() => void)>,
) {
  return async (params: Record<string, string>, query: URLSearchParams) => {
    const current = await ensureSession();
    if (!current) {
      router.go(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, true);
      return;
    }
    const ctx: AppContext = { api, router, ...current };
    const cleanup = await render(ctx, params, query);
    if (typeof cleanup === "function") unmount = cleanup;
  };
}

router
  .add("/login", (_params, query) => {
    unmount?.();
    unmount = null;
    mountLogin(clear(root), api, async () => {
      session = null;
      const next = query.get("next");
      router.go(next && next.startsWith("/") && !next.startsWith("//") ? next : "/", true);
    });
  })
  .add(
    "/",
    guarded((ctx) => {
      if (ctx.projects.length > 0) {
        router.go(`/p/${encodeURIComponent(ctx.projects[0].name)}`, true);
        return;
      }
      shell(ctx, null, "").append(
        h("p", { "data-testid": "no-projects" }, "You are not a member of any project yet."),
      );
    }),
  )
  .add(
    "/p/:project",
    guarded((ctx, params, query) => mountWorklist(shell(ctx, params.project, "Worklist"), ctx, params.project, query)),
  )
  .add(
    "/p/:project/upload",
    guarded((ctx, params) => {
      const main = shell(ctx, params.project, "Upload");
      mountUpload(main, {
        project: params.project,
        api: ctx.api,
        onUploaded: () => router.go(`/p/${encodeURIComponent(params.project)}`),
      });
    }),
  )
  .add(
    "/p/:project/jobs",
    guarded((ctx, params) => mountJobs(shell(ctx, params.project, "Jobs"), ctx, params.project)),
  )
  .add(
    "/p/:project/tasks",
    guarded((ctx, params) => mountMyTasks(shell(ctx, params.project, "My tasks"), ctx, params.project)),
  )
  .add(
    "/p/:project/tasks/new",
    guarded((ctx, params) => mountNewTask(shell(ctx, params.project, "Dashboard"), ctx, params.project)),
  )
  .add(
    "/p/:project/review",
    guarded((ctx, params) => mountReview(shell(ctx, params.project, "Review"), ctx, params.project)),
  )
  .add(
    "/p/:project/dashboard",
    guarded((ctx, params) => mountDashboard(shell(ctx, params.project, "Dashboard"), ctx, params.project)),
  )
  .add(
    "/p/:project/study/:study",
    guarded((ctx, params, query) =>
      mountStudy(shell(ctx, params.project, ""), ctx, params.project, params.study, query),
    ),
  )
  .otherwise(
    guarded((ctx) => {
      shell(ctx, null, "").append(h("p", { "data-testid": "not-found" }, "No such page."));
    }),
  );

router.start();
