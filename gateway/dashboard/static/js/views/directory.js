// A directory: its state and counts, users, groups and the live event feed. The page subscribes to the
// directory's events from the newest one it has shown; each event refreshes what changed, without a reload.

import { describe, graphql } from "../api.js";
import {
  badge,
  breadcrumbs,
  coalesce,
  confirmAction,
  copyButton,
  errorBox,
  h,
  heading,
  replace,
  toast,
} from "../dom.js";
import { typeLabel } from "../labels.js";
import { subscribe } from "../live.js";
import { credentialsPanel } from "./credentials.js";
import { EVENT_FIELDS, eventFeed } from "./event-feed.js";
import { groupsTable } from "./groups-table.js";
import { liveIndicator } from "./live-indicator.js";
import { mappingsPanel } from "./mappings-panel.js";
import { requestLog } from "./request-log.js";
import { setupLinksPanel } from "./setup-links.js";
import { usersTable } from "./users-table.js";

const DIRECTORY = `query Directory($id: ID!) {
  directory(id: $id) {
    id name type state endpoint userCount activeUserCount inactiveUserCount groupCount
    organization { id name }
  }
}`;

const RECENT_EVENTS = `query RecentEvents($id: ID!) {
  events(directoryId: $id, last: 30) { edges { node { ${EVENT_FIELDS} } } }
}`;

const DIRECTORY_EVENTS = `subscription DirectoryEvents($id: ID!, $after: String) {
  directoryEventBatches(directoryId: $id, after: $after, maxBatch: 100) { ${EVENT_FIELDS} }
}`;

const ROTATE = `mutation RotateToken($id: ID!) {
  rotateDirectoryToken(id: $id) { endpoint bearerToken directory { id type } }
}`;

const DELETE = `mutation DeleteDirectory($id: ID!) { deleteDirectory(id: $id) { id } }`;

function stat(id, label, value) {
  return h("div", { class: "stat" }, h("dt", null, label), h("dd", { id }, value.toLocaleString()));
}

// What each provider calls the button that sends its first SCIM request.
const FIRST_REQUEST = {
  JUMPCLOUD: "In JumpCloud, press Test Connection.",
  OKTA: "In Okta, press Test Connector Configuration.",
  AZURE: "In Entra ID, press Test Connection (or Provision on demand).",
  ONELOGIN: "In OneLogin, enable the API connection and save.",
  GENERIC: "Send any authorized request, e.g. GET /ServiceProviderConfig.",
};

function unlinkedNotice(type) {
  return h(
    "p",
    { class: "notice", id: "unlinked-notice" },
    "Waiting for the identity provider: the directory turns linked with its first SCIM request. ",
    h("strong", null, FIRST_REQUEST[type] ?? FIRST_REQUEST.GENERIC),
  );
}

const SETUP_LINK = `mutation SetupLink($id: ID!) { createSetupLink(directoryId: $id) { url expiresAt } }`;

export async function directoryView(main, { ids: [id], signal }) {
  let directory = null;
  let deleting = false;
  const title = heading("Directory");
  const crumbs = h("div");
  const meta = h("p", { class: "meta" });
  const indicator = liveIndicator();
  const alerts = h("div", { class: "alerts" });
  const rotation = h("div");
  const summary = h("div");
  const users = usersTable({ directoryId: id, onError: showError });
  const groups = groupsTable({ directoryId: id, onError: showError });
  const feed = eventFeed();
  const log = requestLog({ directoryId: id, onError: showError });
  const links = setupLinksPanel({ directoryId: id, onError: showError });
  const setupLink = h("button", { type: "button", class: "secondary", id: "setup-link", onclick: makeSetupLink }, "Setup link");
  const rotate = h("button", { type: "button", class: "secondary", onclick: rotateToken }, "Rotate token");
  const remove = h("button", { type: "button", class: "danger", onclick: deleteDirectory }, "Delete directory");

  main.append(
    crumbs,
    h(
      "div",
      { class: "page-head" },
      h("div", null, title, meta),
      h("div", { class: "actions" }, indicator.element, setupLink, rotate, remove),
    ),
    alerts,
    rotation,
    summary,
    h(
      "div",
      { class: "columns" },
      h("div", { class: "column-main" }, users.element, groups.element, mappingsPanel(id, signal).element, log.element, links.element),
      h(
        "section",
        { class: "card column-side", "aria-labelledby": "events-title" },
        h("h2", { id: "events-title" }, "Live events"),
        h("p", { class: "hint", id: "feed-hint" }, "The list scrolls: a shade marks more events above or below."),
        feed.body,
      ),
    ),
  );

  function showError(failure) {
    if (!signal.aborted) replace(alerts, errorBox(describe(failure), () => refresh.schedule()));
  }

  async function loadDirectory() {
    const data = await graphql(DIRECTORY, { id });
    if (signal.aborted) return;
    directory = data.directory;
    renderSummary();
  }

  function renderSummary() {
    const organization = directory.organization;
    document.title = `${directory.name} · Directory Sync`;
    title.textContent = directory.name;
    replace(
      crumbs,
      breadcrumbs(
        ["Organizations", "#/organizations"],
        [organization.name, `#/organizations/${organization.id}`],
        [directory.name],
      ),
    );
    replace(meta, typeLabel(directory.type), " ", h("span", { id: "directory-state" }, badge(directory.state)));
    replace(
      summary,
      directory.state === "UNLINKED" ? unlinkedNotice(directory.type) : null,
      h(
        "section",
        { class: "card endpoint", "aria-labelledby": "endpoint-title" },
        h("h2", { id: "endpoint-title" }, "SCIM endpoint"),
        h(
          "div",
          { class: "secret-row" },
          h("code", { id: "directory-endpoint" }, directory.endpoint),
          copyButton(() => directory.endpoint, "endpoint"),
        ),
      ),
      h(
        "dl",
        { class: "stats" },
        stat("user-count", "Users", directory.userCount),
        stat("active-user-count", "Active", directory.activeUserCount),
        stat("inactive-user-count", "Inactive", directory.inactiveUserCount),
        stat("group-count", "Groups", directory.groupCount),
      ),
    );
  }

  const refresh = coalesce(async () => {
    try {
      await Promise.all([loadDirectory(), users.refresh(), groups.refresh(), log.refresh(), links.refresh()]);
      if (!signal.aborted) alerts.replaceChildren();
    } catch (failure) {
      showError(failure);
    }
  });

  async function makeSetupLink() {
    try {
      const { createSetupLink: link } = await graphql(SETUP_LINK, { id });
      replace(
        rotation,
        h(
          "section",
          { class: "card credentials", id: "setup-link-panel" },
          h("h2", null, "Setup link for the customer's IT admin"),
          h(
            "p",
            { class: "warning" },
            `Shown once; it works without an API key until ${new Date(link.expiresAt).toLocaleString()} and reveals ` +
              "a new bearer token once (the current token then stops working).",
          ),
          h("div", { class: "secret-row" }, h("code", { id: "setup-link-url" }, link.url), copyButton(() => link.url, "setup link")),
        ),
      );
      await links.refresh();
    } catch (failure) {
      showError(failure);
    }
  }

  async function rotateToken() {
    const confirmed = await confirmAction({
      title: "Rotate the bearer token?",
      message:
        "The current token stops working at once: the identity provider cannot sync until you paste the new " +
        "token into its SCIM settings.",
      confirmLabel: "Rotate token",
    });
    if (!confirmed) return;
    try {
      const { rotateDirectoryToken: issued } = await graphql(ROTATE, { id });
      const type = issued.directory.type;
      replace(rotation, credentialsPanel({ endpoint: issued.endpoint, bearerToken: issued.bearerToken, type, rotated: true }));
      rotation.querySelector("h2").setAttribute("tabindex", "-1");
      rotation.querySelector("h2").focus();
    } catch (failure) {
      showError(failure);
    }
  }

  async function deleteDirectory() {
    const confirmed = await confirmAction({
      title: `Delete ${directory?.name ?? "this directory"}?`,
      message:
        "Its users, groups and memberships are deleted, and its SCIM endpoint stops answering. This cannot be undone.",
      confirmLabel: "Delete directory",
      danger: true,
    });
    if (!confirmed) return;
    deleting = true;
    try {
      await graphql(DELETE, { id });
      toast(`Deleted directory ${directory?.name ?? id}.`);
      location.hash = directory ? `#/organizations/${directory.organization.id}` : "#/organizations";
    } catch (failure) {
      deleting = false;
      showError(failure);
    }
  }

  function directoryDeleted() {
    if (deleting) return; // this page deleted it and is already on its way out
    toast(`Directory ${directory?.name ?? id} was deleted.`);
    location.hash = directory ? `#/organizations/${directory.organization.id}` : "#/organizations";
  }

  const [recent] = await Promise.all([graphql(RECENT_EVENTS, { id }), loadDirectory()]);
  if (signal.aborted) return;
  const shown = recent.events.edges.map((edge) => edge.node);
  shown.forEach(feed.add);
  const stop = subscribe({
    query: DIRECTORY_EVENTS,
    variables: { id },
    field: "directoryEventBatches",
    // Resume right after the newest event shown (from the log's start when there is none yet): no gap.
    after: shown.at(-1)?.cursor ?? "0",
    onEvent(event) {
      feed.add(event);
      if (event.event === "dsync.deleted") directoryDeleted();
      else refresh.schedule();
    },
    onStatus: indicator.update,
    onReconnect: () => refresh.schedule(),
    onFatal(failure) {
      indicator.fail(describe(failure));
      showError(failure);
    },
  });
  signal.addEventListener("abort", () => {
    stop();
    refresh.cancel();
  });
  await Promise.all([users.refresh(), groups.refresh(), log.refresh(), links.refresh()]);
  // SCIM requests that change nothing (lookups, errors) write no event: poll the log while the page is open.
  const polling = setInterval(() => log.refresh(), 5000);
  signal.addEventListener("abort", () => clearInterval(polling));
}
