// The setup page a customer's IT admin opens from a setup link: no API key, only the link's token, read from the
// URL's fragment (browsers never send it to a server) and sent in POST bodies. Pick the provider, copy the
// endpoint, reveal the bearer token once, follow the steps, and watch the status turn linked.

import { copyButton, h, replace, rich } from "./dom.js";
import { DIRECTORY_TYPES } from "./labels.js";
import { STEPS } from "./views/credentials.js";

const POLL_MS = 3000;
const token = decodeURIComponent(location.hash.replace(/^#/, ""));
// Keep the token out of the address bar (screenshots, shoulder surfing); the page holds it in memory.
history.replaceState(null, "", location.pathname);
const main = document.getElementById("main");

async function call(path) {
  const response = await fetch(`api/${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token }),
    cache: "no-store",
  });
  const body = await response.json().catch(() => ({ error: "invalid", message: "The gateway did not answer." }));
  return { ok: response.ok, body };
}

function unavailable(body) {
  const titles = { expired: "This setup link has expired", used: "This setup link was used" };
  replace(
    main,
    h(
      "section",
      { class: "card", id: "link-unavailable", dataset: { reason: body.error ?? "invalid" } },
      h("h1", null, titles[body.error] ?? "This setup link is not valid"),
      h("p", null, body.message ?? "Ask the person who sent it for a new link."),
    ),
  );
}

function field(id, label, value) {
  return h(
    "div",
    { class: "secret" },
    h("span", { class: "secret-label", id: `${id}-label` }, label),
    h("div", { class: "secret-row" }, h("code", { id, "aria-labelledby": `${id}-label` }, value), copyButton(() => value, label)),
  );
}

function statusBadge(state) {
  const linked = state === "linked";
  return h(
    "p",
    { id: "setup-status", class: linked ? "notice success" : "notice", dataset: { state } },
    linked
      ? "Linked: the gateway received the first SCIM request from your identity provider. You are done."
      : "Waiting for the first SCIM request from your identity provider (its Test Connection counts).",
  );
}

function render(view) {
  const directory = view.directory;
  let provider = directory.type;
  const steps = h("ol", { class: "steps", id: "setup-steps" });
  const status = h("div", null, statusBadge(directory.state));
  const secret = h("div", { id: "reveal-area" });
  const renderSteps = () => replace(steps, (STEPS[provider] ?? STEPS.GENERIC).map((step) => h("li", null, rich(step))));
  const picker = h(
    "select",
    { id: "provider", onchange: (event) => ((provider = event.target.value), renderSteps()) },
    DIRECTORY_TYPES.map((type) => h("option", { value: type.value, selected: type.value === provider }, type.label)),
  );
  renderSteps();

  function revealButton() {
    return [
      h(
        "p",
        { class: "warning" },
        "Revealing issues a new bearer token for this directory: a token given out before stops working. It rotates " +
          "nothing else, and this link can reveal only once: copy the token into your identity provider right away.",
      ),
      h("button", { type: "button", id: "reveal", onclick: reveal }, "Reveal bearer token"),
    ];
  }

  async function reveal() {
    const { ok, body } = await call("reveal");
    if (!ok) {
      replace(secret, h("p", { class: "error", id: "reveal-error" }, body.message));
      return;
    }
    replace(secret, field("bearer-token", "Bearer token", body.bearer_token));
  }

  replace(
    main,
    h(
      "section",
      { class: "card credentials" },
      h("h1", null, `Connect ${directory.name}`),
      h("p", { class: "meta" }, `This link expires ${new Date(view.expires_at).toLocaleString()}.`),
      status,
      h("label", { for: "provider" }, "Identity provider "),
      picker,
      field("endpoint", "Endpoint (SCIM base URL)", directory.endpoint),
      secret,
      h("h2", null, "Steps"),
      steps,
    ),
  );
  replace(
    secret,
    view.revealed
      ? h("p", { class: "notice", id: "already-revealed" }, "This link's token was already revealed. Ask for a new link if you lost it.")
      : revealButton(),
  );

  const timer = setInterval(async () => {
    const { ok, body } = await call("open");
    if (!ok) return;
    replace(status, statusBadge(body.directory.state));
    if (body.directory.state === "linked") clearInterval(timer);
  }, POLL_MS);
}

async function start() {
  if (!token) {
    unavailable({ error: "invalid", message: "The link is incomplete: open the whole address you were sent." });
    return;
  }
  const { ok, body } = await call("open");
  if (ok) render(body);
  else unavailable(body);
}

// Another link pasted into this tab changes only the fragment: start over with it.
window.addEventListener("hashchange", () => location.reload());
start();
