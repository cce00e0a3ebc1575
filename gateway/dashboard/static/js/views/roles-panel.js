// An organization's roles (slug, name, the default) and custom attributes (WorkOS's standard set and its own):
// define, make default, delete. Which IdP groups give which role is set per directory (mappings-panel.js).

import { describe, graphql } from "../api.js";
import { badge, confirmAction, dataTable, emptyState, errorBox, h, rerender, toast } from "../dom.js";

const RULES = `query OrganizationRules($id: ID!) {
  roles(organizationId: $id) { id slug name isDefault }
  attributeDefinitions(organizationId: $id) { name standard }
}`;
const CREATE_ROLE = `mutation CreateRole($organizationId: ID!, $slug: String!, $name: String!, $isDefault: Boolean!) {
  createRole(organizationId: $organizationId, slug: $slug, name: $name, isDefault: $isDefault) { id }
}`;
const MAKE_DEFAULT = `mutation MakeDefaultRole($id: ID!) { updateRole(id: $id, isDefault: true) { id } }`;
const DELETE_ROLE = `mutation DeleteRole($id: ID!) { deleteRole(id: $id) { id } }`;
const DEFINE = `mutation DefineAttribute($organizationId: ID!, $name: String!) {
  defineAttribute(organizationId: $organizationId, name: $name) { name }
}`;
const UNDEFINE = `mutation DeleteAttributeDefinition($organizationId: ID!, $name: String!) {
  deleteAttributeDefinition(organizationId: $organizationId, name: $name)
}`;

async function act(mutation, variables, reload, done) {
  try {
    await graphql(mutation, variables);
    if (done) toast(done);
    reload();
  } catch (failure) {
    toast(describe(failure));
  }
}

function roleRow(organizationId, role, reload) {
  const makeDefault = h("button", { type: "button", class: "secondary" }, "Make default");
  makeDefault.addEventListener("click", () => act(MAKE_DEFAULT, { id: role.id }, reload, `${role.slug} is the default role`));
  const remove = h("button", { type: "button", class: "secondary danger" }, "Delete");
  remove.addEventListener("click", async () => {
    const confirmed = await confirmAction({
      title: `Delete the role ${role.slug}?`,
      message: "Its group mappings go with it; its holders are re-evaluated.",
      confirmLabel: "Delete",
      danger: true,
    });
    if (confirmed) act(DELETE_ROLE, { id: role.id }, reload);
  });
  return h(
    "tr",
    { dataset: { role: role.slug } },
    h("th", { scope: "row" }, h("code", null, role.slug)),
    h("td", null, role.name),
    h("td", null, role.isDefault ? badge("default") : makeDefault),
    h("td", null, remove),
  );
}

function roleForm(organizationId, reload) {
  const slug = h("input", { id: "role-slug", name: "slug", required: true, placeholder: "admin", autocomplete: "off" });
  const name = h("input", { id: "role-name", name: "name", placeholder: "Administrator" });
  const isDefault = h("input", { id: "role-default", name: "default", type: "checkbox" });
  const error = h("p", { class: "form-error", role: "alert" });
  const form = h(
    "form",
    { class: "stack", id: "create-role", novalidate: true },
    h("h3", null, "Add a role"),
    h("label", { for: "role-slug" }, "Slug"),
    slug,
    h("label", { for: "role-name" }, "Name"),
    name,
    h("label", { class: "checkbox" }, isDefault, " Default role (users in no mapped group)"),
    error,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Add role")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      const value = slug.value.trim();
      await graphql(CREATE_ROLE, { organizationId, slug: value, name: name.value.trim() || value, isDefault: isDefault.checked });
      slug.value = name.value = "";
      isDefault.checked = false;
      reload();
    } catch (failure) {
      error.textContent = describe(failure);
    }
  });
  return form;
}

function attributeList(organizationId, definitions, reload) {
  const items = definitions.map((definition) => {
    if (definition.standard) return h("li", { dataset: { attribute: definition.name } }, h("code", null, definition.name));
    const remove = h("button", { type: "button", class: "link danger", "aria-label": `Delete ${definition.name}` }, "×");
    remove.addEventListener("click", () => act(UNDEFINE, { organizationId, name: definition.name }, reload));
    return h("li", { dataset: { attribute: definition.name } }, h("code", null, definition.name), " (own) ", remove);
  });
  const name = h("input", { id: "attribute-name", name: "name", required: true, placeholder: "badge_number", autocomplete: "off" });
  const error = h("p", { class: "form-error", role: "alert" });
  const form = h(
    "form",
    { class: "inline-form", id: "define-attribute", novalidate: true },
    h("label", { for: "attribute-name" }, "New attribute"),
    name,
    h("button", { type: "submit", class: "secondary" }, "Define"),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await graphql(DEFINE, { organizationId, name: name.value.trim() });
      name.value = "";
      reload();
    } catch (failure) {
      error.textContent = describe(failure);
    }
  });
  return h(
    "div",
    { class: "stack" },
    h("h3", null, "Custom attributes"),
    h("p", { class: "hint" }, "Each directory reads them from its IdP's fields (set where, on the directory's page)."),
    h("ul", { class: "attribute-list", id: "attribute-definitions" }, items),
    form,
  );
}

export function rolesPanel(organizationId, signal) {
  const body = h("div", { "aria-live": "polite" });
  async function reload() {
    try {
      const { roles, attributeDefinitions } = await graphql(RULES, { id: organizationId });
      if (signal.aborted) return;
      rerender(
        body,
        roles.length
          ? dataTable({
              id: "roles",
              caption: "Roles",
              columns: [{ label: "Slug" }, { label: "Name" }, { label: "Default" }, { label: "Actions", hidden: true }],
              rows: roles.map((role) => roleRow(organizationId, role, reload)),
            })
          : emptyState("No roles", "Define roles, then map IdP groups to them on each directory's page."),
        roleForm(organizationId, reload),
        attributeList(organizationId, attributeDefinitions, reload),
      );
    } catch (failure) {
      if (!signal.aborted) rerender(body, errorBox(describe(failure), reload));
    }
  }
  reload();
  return { element: h("section", { class: "card", id: "roles-panel" }, h("h2", null, "Roles and attributes"), body), reload };
}
