/**
 * A browser without a browser, for the approval inbox tests: fetch with manual redirects and a cookie jar
 * per origin (Max-Age=0 deletes), enough to walk the real OIDC authorization-code flow through the test IdP.
 */
export interface Page {
  url: string;
  status: number;
  html: string;
  /** Every Set-Cookie header received on the way. */
  setCookies: string[];
}

export class CookieBrowser {
  readonly jars = new Map<string, Map<string, string>>();

  cookie(origin: string, name: string): string | undefined {
    return this.jars.get(origin)?.get(name);
  }

  setCookie(origin: string, name: string, value: string): void {
    if (!this.jars.has(origin)) this.jars.set(origin, new Map());
    this.jars.get(origin)!.set(name, value);
  }

  /** One request, no redirect followed; cookies sent and stored. */
  async request(
    url: string,
    init: {
      method?: string;
      form?: Record<string, string | string[]>;
      body?: string;
      headers?: Record<string, string>;
    } = {},
  ): Promise<Response & { setCookies: string[] }> {
    const origin = new URL(url).origin;
    const jar = this.jars.get(origin) ?? new Map<string, string>();
    const headers: Record<string, string> = { ...init.headers };
    if (jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    let body = init.body;
    if (init.form) {
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(init.form)) for (const x of Array.isArray(v) ? v : [v]) params.append(k, x);
      body = params.toString();
      headers['content-type'] ??= 'application/x-www-form-urlencoded';
    }
    const res = await fetch(url, {
      method: init.method ?? (body !== undefined ? 'POST' : 'GET'),
      headers,
      body,
      redirect: 'manual',
    });
    const setCookies = res.headers.getSetCookie();
    for (const line of setCookies) {
      const [pair, ...attrs] = line.split(';');
      const at = pair!.indexOf('=');
      const name = pair!.slice(0, at).trim();
      const value = pair!.slice(at + 1).trim();
      const gone = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a)) || value === '';
      if (gone) jar.delete(name);
      else jar.set(name, value);
    }
    this.jars.set(origin, jar);
    return Object.assign(res, { setCookies });
  }

  /** A request, then every redirect (as GET) until a page answers; `stopAt` ends the walk at a matching URL unvisited. */
  async go(
    url: string,
    init: Parameters<CookieBrowser['request']>[1] = {},
    stopAt?: (next: string) => boolean,
  ): Promise<Page> {
    const setCookies: string[] = [];
    let res = await this.request(url, init);
    setCookies.push(...res.setCookies);
    for (let hops = 0; res.status >= 300 && res.status < 400 && hops < 20; hops++) {
      const next = new URL(res.headers.get('location')!, url).href;
      if (stopAt?.(next)) return { url: next, status: res.status, html: '', setCookies };
      url = next;
      res = await this.request(url);
      setCookies.push(...res.setCookies);
    }
    return { url, status: res.status, html: await res.text(), setCookies };
  }
}

/** The value of the first hidden/text input `name` in a page (or in the element whose id is given). */
export function inputValue(html: string, name: string, within?: string): string | undefined {
  let scope = html;
  if (within) {
    const start = html.indexOf(`id="${within}"`);
    if (start < 0) return undefined;
    scope = html.slice(start);
  }
  return new RegExp(`name="${name}" value="([^"]*)"`)
    .exec(scope)?.[1]
    ?.replace(/&#(\d+);/g, (_m, d: string) => String.fromCharCode(Number(d)));
}
