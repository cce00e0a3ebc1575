// A directory's setup links: status, created, expiry, and a revoke button for each. The URL itself is shown only
// when a link is created (only its token's hash is stored); revoking deletes the link, which then answers "not valid".

import { graphql } from "../api.js";
import { confirmAction, h, replace, toast } from "../dom.js";

const LINKS = `query SetupLinks($id: ID!) { setupLinks(directoryId: $id) { id status createdAt expiresAt revealedAt } }`;
const REVOKE = `mutation RevokeSetupLink($id: ID!) { revokeSetupLink(id: $id) { id } }`;

const STATUS = { ACTIVE: "active", EXPIRED: "expired", USED: "used (token revealed)" };
const when = (value) => new Date(value).toLocaleString();

export function setupLinksPanel({ directoryId, onError }) {
  const rows = h("tbody");
  const element = h(
    "section",
    { class: "card", id: "setup-links", "aria-labelledby": "setup-links-title" },
    h("h2", { id: "setup-links-title" }, "Setup links"),
    h(
      "div",
      { class: "table-scroll" },
      h(
        "table",
        null,
        h("thead", null, h("tr", null, ["Link", "Status", "Created", "Expires", ""].map((c) => h("th", null, c)))),
        rows,
      ),
    ),
  );

  async function revoke(link) {
    const confirmed = await confirmAction({
      title: `Revoke ${link.id}?`,
      message: "Whoever holds the link can no longer open it or reveal the bearer token.",
      confirmLabel: "Revoke link",
      danger: true,
    });
    if (!confirmed) return;
    try {
      await graphql(REVOKE, { id: link.id });
      toast(`Revoked ${link.id}.`);
      await refresh();
    } catch (failure) {
      onError(failure);
    }
  }

  async function refresh() {
    try {
      const { setupLinks } = await graphql(LINKS, { id: directoryId });
      replace(
        rows,
        setupLinks.length
          ? setupLinks.map((link) =>
              h(
                "tr",
                { dataset: { link: link.id, status: link.status } },
                h("td", null, h("code", null, link.id)),
                h("td", null, STATUS[link.status] ?? link.status),
                h("td", null, when(link.createdAt)),
                h("td", null, when(link.expiresAt)),
                h(
                  "td",
                  { class: "row-action" },
                  h("button", { type: "button", class: "danger", onclick: () => revoke(link) }, "Revoke"),
                ),
              ),
            )
          : h("tr", null, h("td", { colspan: 5 }, "No setup links. “Setup link” above makes one.")),
      );
    } catch (failure) {
      onError(failure);
    }
  }

  return { element, refresh };
}
