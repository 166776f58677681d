import type { AppContext } from "../main";
import { h } from "../dom";

export function mountWorklist(container: HTMLElement, _ctx: AppContext, project: string, _query: URLSearchParams): void {
  container.append(h("h2", {}, `Worklist of ${project}`));
}
