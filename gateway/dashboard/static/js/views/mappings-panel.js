// A directory's rules: which of its groups give which role (a picker searches the directory's groups), and where
// each custom attribute is read from (the provider's default, the admin's SCIM path, or not at all).

import { describe, graphql } from "../api.js";
import { badge, dataTable, emptyState, errorBox, h, rerender, toast } from "../dom.js";

const RULES = `query DirectoryRules($id: ID!) {
  directory(id: $id) { organization { id } }
  roleMappings(directoryId: $id) { id groupId groupName role priority }
  attributeMappings(directoryId: $id) { name path source }
}`;
const ROLES = `query Roles($id: ID!) { roles(organizationId: $id) { slug name isDefault } }`;
const GROUPS = `query GroupPicker($id: ID!, $search: String) {
  directory(id: $id) { groups(first: 20, search: $search) { edges { node { id name } } } }
}`;
const MAP_GROUP = `mutation MapGroupToRole($directoryId: ID!, $groupId: ID!, $role: String!, $priority: Int!) {
  mapGroupToRole(directoryId: $directoryId, groupId: $groupId, role: $role, priority: $priority) { id }
}`;
const UNMAP = `mutation UnmapGroup($directoryId: ID!, $groupId: ID!) { unmapGroup(directoryId: $directoryId, groupId: $groupId) { id } }`;
const MAP_ATTRIBUTE = `mutation MapAttribute($directoryId: ID!, $name: String!, $path: String) {
  mapAttribute(directoryId: $directoryId, name: $name, path: $path) { name }
}`;
const RESET = `mutation ResetAttributeMapping($directoryId: ID!, $name: String!) {
  resetAttributeMapping(directoryId: $directoryId, name: $name) { name }
}`;

function groupPicker(directoryId) {
  const search = h("input", { id: "mapping-group-search", type: "search", placeholder: "Search groups", autocomplete: "off" });
  const select = h("select", { id: "mapping-group", required: true });
  let timer = null;
  async function load() {
    const { directory } = await graphql(GROUPS, { id: directoryId, search: search.value.trim() || null });
    const groups = directory.groups.edges.map((edge) => edge.node);
    rerender(
      select,
      groups.length ? groups.map((group) => h("option", { value: group.id }, group.name)) : h("option", { value: "" }, "No group matches"),
    );
  }
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => load().catch(() => {}), 250);
  });
  load().catch(() => {});
  return { search, select };
}

function mappingForm(directoryId, roles, reload) {
  const picker = groupPicker(directoryId);
  const role = h("select", { id: "mapping-role" }, roles.map((r) => h("option", { value: r.slug }, `${r.name} (${r.slug})`)));
  const priority = h("input", { id: "mapping-priority", type: "number", value: "0", step: "1" });
  const error = h("p", { class: "form-error", role: "alert" });
  const form = h(
    "form",
    { class: "stack", id: "map-group", novalidate: true },
    h("h3", null, "Map a group to a role"),
    h("label", { for: "mapping-group-search" }, "Group"),
    picker.search,
    picker.select,
    h("label", { for: "mapping-role" }, "Role"),
    role,
    h("label", { for: "mapping-priority" }, "Priority"),
    priority,
    h("p", { class: "hint" }, "A user in several mapped groups gets the role of the highest priority."),
    error,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Map group")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      if (!picker.select.value) throw new Error("Choose a group");
      await graphql(MAP_GROUP, {
        directoryId,
        groupId: picker.select.value,
        role: role.value,
        priority: Number.parseInt(priority.value || "0", 10),
      });
      toast("Mapped: its members are being re-evaluated");
      reload();
    } catch (failure) {
      error.textContent = describe(failure);
    }
  });
  return form;
}

function mappingRow(directoryId, mapping, reload) {
  const remove = h("button", { type: "button", class: "secondary danger" }, "Unmap");
  remove.addEventListener("click", async () => {
    try {
      await graphql(UNMAP, { directoryId, groupId: mapping.groupId });
      reload();
    } catch (failure) {
      toast(describe(failure));
    }
  });
  return h(
    "tr",
    { dataset: { mapping: mapping.groupId } },
    h("th", { scope: "row" }, mapping.groupName),
    h("td", null, h("code", null, mapping.role)),
    h("td", { class: "number" }, String(mapping.priority)),
    h("td", null, remove),
  );
}

function attributeRow(directoryId, mapping, reload) {
  const path = h("input", { value: mapping.path ?? "", "aria-label": `Path of ${mapping.name}`, placeholder: "not read" });
  const save = h("button", { type: "button", class: "secondary" }, "Save");
  save.addEventListener("click", async () => {
    try {
      await graphql(MAP_ATTRIBUTE, { directoryId, name: mapping.name, path: path.value.trim() || null });
      toast(`${mapping.name}: users are being re-evaluated`);
      reload();
    } catch (failure) {
      toast(describe(failure));
    }
  });
  const reset = h("button", { type: "button", class: "secondary" }, "Default");
  reset.addEventListener("click", async () => {
    try {
      await graphql(RESET, { directoryId, name: mapping.name });
      reload();
    } catch (failure) {
      toast(describe(failure));
    }
  });
  return h(
    "tr",
    { dataset: { attributeMapping: mapping.name } },
    h("th", { scope: "row" }, h("code", null, mapping.name)),
    h("td", null, badge(mapping.source)),
    h("td", null, path),
    // Only an admin's own choice (a path, or "not read") has a default to go back to.
    h("td", null, save, mapping.source === "DEFAULT" ? null : [" ", reset]),
  );
}

export function mappingsPanel(directoryId, signal) {
  const body = h("div", { "aria-live": "polite" });
  async function reload() {
    try {
      const data = await graphql(RULES, { id: directoryId });
      const { roles } = await graphql(ROLES, { id: data.directory.organization.id });
      if (signal.aborted) return;
      rerender(
        body,
        h("h3", null, "Roles from groups"),
        data.roleMappings.length
          ? dataTable({
              id: "role-mappings",
              caption: "Groups mapped to roles",
              columns: [{ label: "Group" }, { label: "Role" }, { label: "Priority", class: "number" }, { label: "Actions", hidden: true }],
              rows: data.roleMappings.map((mapping) => mappingRow(directoryId, mapping, reload)),
            })
          : emptyState("No group mapped", "Users get the organization's default role until a group gives them another."),
        roles.length
          ? mappingForm(directoryId, roles, reload)
          : h("p", { class: "hint" }, "Define roles on the organization's page first."),
        h("h3", null, "Custom attributes"),
        h("p", { class: "hint" }, 'A SCIM path: title, emails[type eq "work"].value, or an extension URN and attribute.'),
        dataTable({
          id: "attribute-mappings",
          caption: "Where each attribute is read",
          columns: [{ label: "Attribute" }, { label: "Source" }, { label: "Path" }, { label: "Actions", hidden: true }],
          rows: data.attributeMappings.map((mapping) => attributeRow(directoryId, mapping, reload)),
        }),
      );
    } catch (failure) {
      if (!signal.aborted) rerender(body, errorBox(describe(failure), reload));
    }
  }
  reload();
  return { element: h("section", { class: "card", id: "mappings-panel" }, h("h2", null, "Roles and attributes"), body), reload };
}
