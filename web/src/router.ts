// A small history-API router: the server answers every non-API path with index.html.
export type Params = Record<string, string>;
export type Handler = (params: Params, query: URLSearchParams) => void | Promise<void>;

interface Route {
  pattern: RegExp;
  keys: string[];
  handler: Handler;
}

export class Router {
  private routes: Route[] = [];
  private fallback: Handler = () => undefined;

  add(path: string, handler: Handler): this {
    const keys: string[] = [];
    const source = path.replace(/:(\w+)/g, (_, key: string) => {
      keys.push(key);
      return "([^/]+)";
    });
    this.routes.push({ pattern: new RegExp(`^${source}/?$`), keys, handler });
    return this;
  }

  otherwise(handler: Handler): this {
    this.fallback = handler;
    return this;
  }

  start(): void {
    window.addEventListener("popstate", () => void this.resolve());
    document.addEventListener("click", (event) => {
      const link = (event.target as Element | null)?.closest?.("a[data-link]");
      if (link instanceof HTMLAnchorElement && event.button === 0 && !event.ctrlKey && !event.metaKey) {
        event.preventDefault();
        this.go(link.pathname + link.search);
      }
    });
    void this.resolve();
  }

  go(url: string, replace = false): void {
    if (replace) history.replaceState(null, "", url);
    else history.pushState(null, "", url);
    void this.resolve();
  }

  async resolve(): Promise<void> {
    const { pathname, search } = window.location;
    const query = new URLSearchParams(search);
    for (const route of this.routes) {
      const match = route.pattern.exec(pathname);
      if (match) {
        const params: Params = {};
        route.keys.forEach((key, index) => (params[key] = decodeURIComponent(match[index + 1])));
        await route.handler(params, query);
        return;
      }
    }
    await this.fallback({}, query);
  }
}
