import type { AppContext } from "../main";
import { h } from "../dom";

export function mountStudy(
  container: HTMLElement,
  _ctx: AppContext,
  _project: string,
  study: string,
  _query: URLSearchParams,
): void {
  container.append(h("h2", {}, `Study ${study}`));
}
