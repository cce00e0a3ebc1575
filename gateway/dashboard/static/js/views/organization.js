import { describe, graphql } from "../api.js";
import {
  badge,
  breadcrumbs,
  coalesce,
  confirmAction,
  emptyState,
  errorBox,
  formatDate,
  h,
  heading,
  rerender,
  toast,
} from "../dom.js";
import { plural, typeLabel } from "../labels.js";
import { subscribe } from "../live.js";
import { liveIndicator } from "./live-indicator.js";
import { rolesPanel } from "./roles-panel.js";
import { webhooksPanel } from "./webhooks-panel.js";

const ORGANIZATION = `query Organization($id: ID!) {
  organization(id: $id) {
    id name domains createdAt
    directories { id name type state createdAt userCount activeUserCount groupCount }
  }
  events(organizationId: $id, last: 1) { edges { node { cursor } } }
}`;

// Only the cursor matters here: any change in the organization refreshes its directories and their counts.
const ORGANIZATION_EVENTS = `subscription OrganizationEvents($id: ID!, $after: String) {
  directoryEventBatches(organizationId: $id, after: $after, maxBatch: 100) { cursor event }
}`;

const RENAME = `mutation RenameOrganization($id: ID!, $name: String!) { updateOrganization(id: $id, name: $name) { id name } }`;
const DELETE = `mutation DeleteOrganization($id: ID!) { deleteOrganization(id: $id) { id } }`;
const VIEWER = `query Viewer { viewer { isAdmin } }`;

function directoryRow(directory) {
  return h(
    "tr",
    { dataset: { directory: directory.id } },
    h(
      "th",
      { scope: "row" },
      h("a", { href: `#/directories/${directory.id}` }, directory.name),
      h("span", { class: "muted show-narrow" }, typeLabel(directory.type)),
    ),
    h("td", { class: "hide-narrow" }, typeLabel(directory.type)),
    h("td", null, badge(directory.state)),
    h(
      "td",
      { class: "number" },
      directory.userCount.toLocaleString(),
      h("span", { class: "muted hide-narrow" }, ` (${directory.activeUserCount.toLocaleString()} active)`),
    ),
    h("td", { class: "number" }, directory.groupCount.toLocaleString()),
    h("td", { class: "hide-narrow" }, formatDate(directory.createdAt)),
  );
}

function directoriesTable(directories) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { id: "directories" },
      h("caption", null, plural(directories.length, "directory", "directories")),
      h(
        "thead",
        null,
        h(
          "tr",
          null,
          h("th", { scope: "col" }, "Name"),
          h("th", { scope: "col", class: "hide-narrow" }, "Type"),
          h("th", { scope: "col" }, "State"),
          h("th", { scope: "col", class: "number" }, "Users"),
          h("th", { scope: "col", class: "number" }, "Groups"),
          h("th", { scope: "col", class: "hide-narrow" }, "Created"),
        ),
      ),
      h("tbody", null, directories.map(directoryRow)),
    ),
  );
}

export async function organizationView(main, { ids: [id], signal }) {
  const title = heading("Organization");
  const crumbs = h("div");
  const domains = h("p", { class: "meta" });
  const indicator = liveIndicator();
  const addLink = h("a", { class: "button primary", href: `#/organizations/${id}/new-directory` }, "Add directory");
  const body = h("div", { "aria-live": "polite" });
  const alerts = h("div", { class: "alerts" });
  let organizationName = "";
  const renameInput = h("input", { id: "rename-organization", required: true, maxlength: "255", "aria-label": "New name" });
  const renameForm = h(
    "form",
    { class: "inline-form", hidden: true, id: "rename-form" },
    renameInput,
    h("button", { type: "submit", class: "primary" }, "Save name"),
  );
  renameForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const { updateOrganization } = await graphql(RENAME, { id, name: renameInput.value });
      toast(`Renamed to ${updateOrganization.name}.`);
      renameForm.hidden = true;
      refresh.schedule();
    } catch (failure) {
      rerender(alerts, errorBox(describe(failure)));
    }
  });
  const rename = h(
    "button",
    {
      type: "button",
      class: "secondary",
      onclick: () => ((renameForm.hidden = !renameForm.hidden), (renameInput.value = organizationName), renameInput.focus()),
    },
    "Rename",
  );
  const remove = h("button", { type: "button", class: "danger", onclick: deleteOrganization, hidden: true }, "Delete organization");
  async function deleteOrganization() {
    const confirmed = await confirmAction({
      title: `Delete ${organizationName}?`,
      message: "Its directories (with their users and groups) and its API keys are deleted. This cannot be undone.",
      confirmLabel: "Delete organization",
      danger: true,
    });
    if (!confirmed) return;
    try {
      await graphql(DELETE, { id });
      toast(`Deleted organization ${organizationName}.`);
      location.hash = "#/organizations";
    } catch (failure) {
      rerender(alerts, errorBox(describe(failure)));
    }
  }
  graphql(VIEWER).then(({ viewer }) => (remove.hidden = !viewer.isAdmin), () => {});
  main.append(
    crumbs,
    h(
      "div",
      { class: "page-head" },
      h("div", null, title, domains),
      h("div", { class: "actions" }, indicator.element, rename, remove, addLink),
    ),
    renameForm,
    alerts,
    h("section", { class: "card" }, h("h2", null, "Directories"), body),
  );
  main.append(rolesPanel(id, signal).element);
  const webhooks = webhooksPanel(id, signal);
  main.append(webhooks.element);
  const refreshWebhooks = coalesce(webhooks.reload, 1000);

  async function load() {
    const data = await graphql(ORGANIZATION, { id });
    if (signal.aborted) return null;
    const organization = data.organization;
    document.title = `${organization.name} · Directory Sync`;
    title.textContent = organization.name;
    organizationName = organization.name;
    rerender(crumbs, breadcrumbs(["Organizations", "#/organizations"], [organization.name]));
    domains.textContent = organization.domains.length ? organization.domains.join(", ") : "No domains";
    rerender(
      body,
      organization.directories.length
        ? directoriesTable(organization.directories)
        : emptyState(
            "No directories yet",
            "Add a directory to get a SCIM endpoint and a bearer token for this organization's identity provider.",
          ),
    );
    return data.events.edges.at(-1)?.node.cursor ?? "0";
  }

  const refresh = coalesce(async () => {
    try {
      await load();
    } catch (failure) {
      if (!signal.aborted) rerender(body, errorBox(describe(failure), () => refresh.schedule()));
    }
  });
  const cursor = await load();
  if (cursor === null) return;
  const stop = subscribe({
    query: ORGANIZATION_EVENTS,
    variables: { id },
    field: "directoryEventBatches",
    after: cursor,
    onEvent: () => {
      refresh.schedule();
      refreshWebhooks.schedule(); // attempts and states change as the new events are delivered
    },
    onStatus: indicator.update,
    onReconnect: () => refresh.schedule(),
    onFatal(failure) {
      indicator.fail(describe(failure));
      alerts.replaceChildren(errorBox(describe(failure)));
    },
  });
  // Deliveries are recorded by the delivery process in batches (every 2 s), after the events that caused them:
  // poll the attempts while the page is open.
  const polling = setInterval(() => refreshWebhooks.schedule(), 3000);
  signal.addEventListener("abort", () => {
    stop();
    clearInterval(polling);
    refresh.cancel();
    refreshWebhooks.cancel();
  });
}
