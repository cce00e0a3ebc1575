// Hash routes (#/organizations/org_…): the page never reloads, and the API key never appears in a URL.

import { apiKey, describe } from "./api.js";
import { errorBox, h, heading, replace } from "./dom.js";
import { addDirectoryView } from "./views/add-directory.js";
import { apiKeysView } from "./views/api-keys.js";
import { directoryView } from "./views/directory.js";
import { organizationView } from "./views/organization.js";
import { organizationsView } from "./views/organizations.js";
import { signInView } from "./views/sign-in.js";

const ROUTES = [
  { pattern: /^\/sign-in$/, view: signInView, title: "Sign in", public: true },
  { pattern: /^\/organizations$/, view: organizationsView, title: "Organizations" },
  { pattern: /^\/organizations\/([\w-]+)$/, view: organizationView, title: "Organization" },
  { pattern: /^\/organizations\/([\w-]+)\/new-directory$/, view: addDirectoryView, title: "Add directory" },
  { pattern: /^\/directories\/([\w-]+)$/, view: directoryView, title: "Directory" },
  { pattern: /^\/api-keys$/, view: apiKeysView, title: "API keys" },
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let current = null;
let firstRender = true;
let signInNotice = "";

function renderNav(signedIn) {
  replace(
    nav,
    signedIn
      ? [
          h("a", { href: "#/organizations" }, "Organizations"),
          h("a", { href: "#/api-keys" }, "API keys"),
          h("button", { type: "button", class: "link", onclick: () => signOut() }, "Sign out"),
        ]
      : [],
  );
}

export function signOut(notice = "") {
  apiKey.clear();
  document.getElementById("toast")?.replaceChildren(); // a toast about the last session must not outlive it
  signInNotice = notice;
  location.hash = "#/sign-in";
}

function route() {
  current?.abort();
  current = null;
  const path = location.hash.replace(/^#/, "") || "/organizations";
  const signedIn = Boolean(apiKey.get());
  if (!signedIn && path !== "/sign-in") return location.replace("#/sign-in");
  if (signedIn && path === "/sign-in") return location.replace("#/organizations");
  renderNav(signedIn);
  const controller = new AbortController();
  current = controller;
  main.replaceChildren();
  const match = ROUTES.map((r) => [r, path.match(r.pattern)]).find(([, m]) => m);
  if (!match) {
    document.title = "Not found · Directory Sync";
    replace(main, heading("Page not found"), h("p", null, h("a", { href: "#/organizations" }, "Go to organizations")));
    return;
  }
  const [{ view, title }, groups] = match;
  document.title = `${title} · Directory Sync`;
  const notice = signInNotice;
  signInNotice = "";
  view(main, { ids: groups.slice(1), signal: controller.signal, notice }).catch((error) => {
    if (controller.signal.aborted) return;
    const retry = error.code === "NOT_FOUND" ? null : route;
    const back = h("p", null, h("a", { href: "#/organizations" }, "Back to organizations"));
    replace(main, heading(retry ? title : `${title} not found`), errorBox(describe(error), retry), back);
  });
  // Keyboard and screen-reader users land on the new page's heading, not on the link they left.
  if (!firstRender) main.querySelector("h1")?.focus();
  firstRender = false;
}

window.addEventListener("hashchange", route);
window.addEventListener("dsync:key-refused", () => {
  if (apiKey.get()) signOut("The gateway no longer accepts your API key (it may have been revoked). Sign in again.");
});
route();
