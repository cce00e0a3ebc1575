// API keys: list (id, scope, created, last used; never the keys), create (shown once) and revoke.

import { describe, graphql } from "../api.js";
import { confirmAction, copyButton, errorBox, formatDate, h, heading, replace, toast } from "../dom.js";

const KEYS = `query ApiKeys { viewer { apiKeyId isAdmin organization { id } } apiKeys { id scope createdAt lastUsedAt } }`;
const CREATE = `mutation CreateApiKey($org: ID) { createApiKey(organizationId: $org) { key apiKey { id scope } } }`;
const REVOKE = `mutation RevokeApiKey($id: ID!) { revokeApiKey(id: $id) { id } }`;

export async function apiKeysView(main, { signal }) {
  const list = h("section", { class: "card" });
  const created = h("div");
  const scope = h("input", { id: "api-key-organization", placeholder: "org_… (empty: an admin key)" });
  const form = h(
    "form",
    { class: "inline-form", id: "create-api-key" },
    h("div", { class: "field" }, h("label", { for: "api-key-organization" }, "Organization (optional)"), scope),
    h("div", { class: "field field-action" }, h("button", { type: "submit", class: "primary" }, "Create API key")),
  );
  main.append(heading("API keys"), h("section", { class: "card" }, form), created, list);
  let viewer = null;

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const org = scope.value.trim() || (viewer?.isAdmin ? null : viewer?.organization?.id);
      const { createApiKey } = await graphql(CREATE, { org });
      replace(
        created,
        h(
          "section",
          { class: "card credentials", id: "new-api-key" },
          h("p", { class: "warning" }, "The key is shown only now (the gateway keeps just its hash)."),
          h("div", { class: "secret-row" }, h("code", null, createApiKey.key), copyButton(() => createApiKey.key, "API key")),
        ),
      );
      await load();
    } catch (failure) {
      replace(created, errorBox(describe(failure)));
    }
  });

  async function revoke(key) {
    const own = key.id === viewer.apiKeyId;
    const confirmed = await confirmAction({
      title: `Revoke ${key.id}?`,
      message: own
        ? "This is the key you are signed in with: you will be signed out."
        : "Requests and live connections made with it are refused at once.",
      confirmLabel: "Revoke key",
      danger: true,
    });
    if (!confirmed) return;
    try {
      await graphql(REVOKE, { id: key.id });
      toast(`Revoked ${key.id}.`);
      await load();
    } catch (failure) {
      replace(created, errorBox(describe(failure)));
    }
  }

  async function load() {
    const data = await graphql(KEYS);
    if (signal.aborted) return;
    viewer = data.viewer;
    replace(
      list,
      h(
        "table",
        { id: "api-keys" },
        h("thead", null, h("tr", null, ["ID", "Scope", "Created", "Last used", ""].map((c) => h("th", null, c)))),
        h(
          "tbody",
          null,
          data.apiKeys.map((key) =>
            h(
              "tr",
              { dataset: { key: key.id } },
              h("td", null, h("code", null, key.id), key.id === viewer.apiKeyId ? " (this session)" : ""),
              h("td", null, key.scope),
              h("td", null, formatDate(key.createdAt)),
              h("td", null, key.lastUsedAt ? formatDate(key.lastUsedAt) : "never"),
              h("td", { class: "row-action" }, h("button", { type: "button", class: "danger", onclick: () => revoke(key) }, "Revoke")),
            ),
          ),
        ),
      ),
    );
  }

  await load();
}
