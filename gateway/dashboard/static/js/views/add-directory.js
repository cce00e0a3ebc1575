import { describe, graphql } from "../api.js";
import { breadcrumbs, h, heading, replace } from "../dom.js";
import { DIRECTORY_TYPES } from "../labels.js";
import { credentialsPanel } from "./credentials.js";

const ORGANIZATION = `query OrganizationName($id: ID!) { organization(id: $id) { id name } }`;

const CREATE = `mutation CreateDirectory($organizationId: ID!, $name: String!, $type: DirectoryType!) {
  createDirectory(organizationId: $organizationId, name: $name, type: $type) {
    endpoint bearerToken directory { id name type }
  }
}`;

function typeChoices() {
  return h(
    "fieldset",
    { class: "choices" },
    h("legend", null, "Identity provider"),
    DIRECTORY_TYPES.map((type, index) =>
      h(
        "label",
        { class: "choice" },
        h("input", { type: "radio", name: "type", value: type.value, checked: index === 0 }),
        h("span", null, type.label),
      ),
    ),
  );
}

export async function addDirectoryView(main, { ids: [organizationId], signal }) {
  const title = heading("Add directory");
  const crumbs = h("div");
  const content = h("div");
  main.append(crumbs, title, content);

  const { organization } = await graphql(ORGANIZATION, { id: organizationId });
  if (signal.aborted) return;
  document.title = `Add directory · ${organization.name} · Directory Sync`;
  replace(
    crumbs,
    breadcrumbs(
      ["Organizations", "#/organizations"],
      [organization.name, `#/organizations/${organization.id}`],
      ["Add directory"],
    ),
  );

  const name = h("input", { id: "directory-name", name: "name", required: true, maxlength: "255" });
  name.value = `${organization.name} JumpCloud`;
  const error = h("p", { class: "form-error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary" }, "Create directory");
  const form = h(
    "form",
    { class: "card stack", novalidate: true },
    typeChoices(),
    h("label", { for: "directory-name" }, "Name"),
    name,
    h("p", { class: "hint" }, "How the directory appears in this dashboard, e.g. “Acme JumpCloud”."),
    error,
    h("div", { class: "actions" }, submit, h("a", { href: `#/organizations/${organization.id}` }, "Cancel")),
  );
  // Keep the suggested name in step with the chosen provider until the name is edited by hand.
  let suggested = name.value;
  form.addEventListener("change", (event) => {
    if (event.target.name !== "type" || name.value !== suggested) return;
    const label = DIRECTORY_TYPES.find((type) => type.value === event.target.value).label;
    suggested = `${organization.name} ${label.replace(/ SCIM v2\.0$/, "").replace(/^Generic$/, "SCIM")}`;
    name.value = suggested;
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    if (!name.value.trim()) {
      error.textContent = "Give the directory a name.";
      name.focus();
      return;
    }
    submit.disabled = true;
    try {
      const type = new FormData(form).get("type");
      const { createDirectory } = await graphql(CREATE, { organizationId, name: name.value.trim(), type });
      if (signal.aborted) return;
      showResult(createDirectory);
    } catch (failure) {
      error.textContent = describe(failure);
      submit.disabled = false;
    }
  });
  content.append(form);

  function showResult(created) {
    const directory = created.directory;
    title.textContent = `Directory “${directory.name}” created`;
    replace(
      content,
      credentialsPanel({ endpoint: created.endpoint, bearerToken: created.bearerToken, type: directory.type }),
      h(
        "p",
        { class: "actions" },
        h("a", { class: "button primary", href: `#/directories/${directory.id}` }, "Open the directory and watch it sync"),
      ),
    );
    title.focus();
  }
}
