import { describe, graphql } from "../api.js";
import { emptyState, errorBox, formatDate, h, heading, replace, toast } from "../dom.js";
import { plural } from "../labels.js";

const ORGANIZATIONS = `query Organizations($after: String) {
  organizations(first: 50, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { id name domains createdAt directories { id state } } }
  }
}`;

const CREATE = `mutation CreateOrganization($name: String!, $domains: [String!]) {
  createOrganization(name: $name, domains: $domains) { id name }
}`;

function splitDomains(text) {
  return text.split(/[\s,;]+/).filter(Boolean);
}

function directorySummary(directories) {
  if (directories.length === 0) return "none";
  const linked = directories.filter((d) => d.state === "LINKED").length;
  return `${plural(directories.length, "directory", "directories")}, ${linked} linked`;
}

function organizationRow(organization) {
  return h(
    "tr",
    null,
    h("th", { scope: "row" }, h("a", { href: `#/organizations/${organization.id}` }, organization.name)),
    h("td", null, organization.domains.join(", ") || "—"),
    h("td", null, directorySummary(organization.directories)),
    h("td", { class: "hide-narrow" }, formatDate(organization.createdAt)),
  );
}

function createForm(onCreated) {
  const name = h("input", { id: "organization-name", name: "name", required: true, maxlength: "255" });
  const domains = h("input", {
    id: "organization-domains",
    name: "domains",
    placeholder: "acme.com, acme.io",
    "aria-describedby": "domains-help",
  });
  const error = h("p", { class: "form-error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary" }, "Create organization");
  const form = h(
    "form",
    { class: "inline-form", novalidate: true, "aria-labelledby": "create-organization-title" },
    h("h2", { id: "create-organization-title" }, "New organization"),
    h("div", { class: "field" }, h("label", { for: "organization-name" }, "Name"), name),
    h(
      "div",
      { class: "field" },
      h("label", { for: "organization-domains" }, "Domains (optional)"),
      domains,
      h("p", { id: "domains-help", class: "hint" }, "Separate several with commas."),
    ),
    h("div", { class: "field field-action" }, submit),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    if (!name.value.trim()) {
      error.textContent = "Give the organization a name.";
      name.focus();
      return;
    }
    submit.disabled = true;
    try {
      const { createOrganization } = await graphql(CREATE, {
        name: name.value.trim(),
        domains: splitDomains(domains.value),
      });
      form.reset();
      toast(`Created organization ${createOrganization.name}.`);
      await onCreated(createOrganization);
    } catch (failure) {
      error.textContent = describe(failure);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

const VIEWER = `query Viewer { viewer { isAdmin organization { id name } } }`;

export async function organizationsView(main, { signal }) {
  const list = h("section", { class: "card", "aria-live": "polite", "aria-busy": "true" });
  const { viewer } = await graphql(VIEWER);
  if (signal.aborted) return;
  // An organization key cannot create organizations: it is told which one it sees instead of a form that fails.
  const top = viewer.isAdmin
    ? h("section", { class: "card" }, createForm(() => load()))
    : h(
        "p",
        { class: "notice", id: "organization-key-notice" },
        `This API key sees one organization: ${viewer.organization?.name ?? "—"}. Creating organizations needs an admin key.`,
      );
  main.append(heading("Organizations"), top, list);

  let rows = [];
  async function load(after = null) {
    list.setAttribute("aria-busy", "true");
    try {
      const { organizations } = await graphql(ORGANIZATIONS, { after });
      if (signal.aborted) return;
      rows = after ? [...rows, ...organizations.edges] : organizations.edges;
      render(organizations);
    } catch (failure) {
      if (!signal.aborted) replace(list, errorBox(describe(failure), () => load()));
    } finally {
      list.setAttribute("aria-busy", "false");
    }
  }

  function render(page) {
    if (rows.length === 0) {
      replace(
        list,
        emptyState(
          "No organizations yet",
          "An organization is a customer of yours. Create one above, then add a directory for its identity provider.",
        ),
      );
      return;
    }
    const more = page.pageInfo.hasNextPage
      ? h("button", { type: "button", class: "secondary", onclick: () => load(page.pageInfo.endCursor) }, "Show more")
      : null;
    replace(
      list,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "organizations" },
          h("caption", null, plural(page.totalCount, "organization")),
          h(
            "thead",
            null,
            h(
              "tr",
              null,
              h("th", { scope: "col" }, "Name"),
              h("th", { scope: "col" }, "Domains"),
              h("th", { scope: "col" }, "Directories"),
              h("th", { scope: "col", class: "hide-narrow" }, "Created"),
            ),
          ),
          h(
            "tbody",
            null,
            rows.map((edge) => organizationRow(edge.node)),
          ),
        ),
      ),
      more,
    );
  }

  await load();
}
