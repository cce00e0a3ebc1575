// A directory's groups with their member counts, newest first; one group at a time shows its members.

import { graphql } from "../api.js";
import { badge, dataTable, emptyState, h, rerender } from "../dom.js";
import { personName, plural } from "../labels.js";
import { NewestFirst, newestFirst, pager } from "../paging.js";

const PAGE_SIZE = 25;
const MEMBERS_SHOWN = 100;

const GROUPS = `query DirectoryGroups($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {
  directory(id: $id) {
    groups(first: $first, after: $after, last: $last, before: $before) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { node { id name memberCount } }
    }
  }
}`;

const MEMBERS = `query GroupMembers($id: ID!, $first: Int!) {
  directoryGroup(id: $id) {
    id
    members(first: $first) {
      totalCount
      edges { node { id userName email firstName lastName displayName state } }
    }
  }
}`;

function membersList(group, members) {
  if (!members) return h("p", { class: "hint" }, "Loading members…");
  if (members.totalCount === 0) return h("p", { class: "hint" }, `${group.name} has no members yet.`);
  const users = members.edges.map((edge) => edge.node);
  const rest = members.totalCount - users.length;
  return [
    h(
      "ul",
      { class: "members", "aria-label": `Members of ${group.name}` },
      users.map((user) =>
        h(
          "li",
          { dataset: { user: user.id } },
          h("span", null, personName(user)),
          h("span", { class: "muted wrap" }, user.email ?? user.userName),
          user.state === "INACTIVE" ? badge(user.state) : null,
        ),
      ),
    ),
    rest > 0 ? h("p", { class: "hint" }, `and ${plural(rest, "more member")}.`) : null,
  ];
}

export function groupsTable({ directoryId, onError }) {
  const paging = new NewestFirst(PAGE_SIZE);
  let sequence = 0;
  let openGroupId = null;
  let members = null;
  let connection = null;

  const heading = h("h2", { id: "groups-title" }, "Groups");
  const results = h("div", { "aria-live": "polite" });
  const element = h("section", { class: "card", "aria-labelledby": "groups-title" }, heading, results);

  async function loadMembers() {
    if (openGroupId === null) {
      members = null;
      return;
    }
    const groupId = openGroupId;
    try {
      const { directoryGroup } = await graphql(MEMBERS, { id: groupId, first: MEMBERS_SHOWN });
      if (groupId === openGroupId) members = directoryGroup.members;
    } catch (failure) {
      if (failure.code !== "NOT_FOUND") throw failure;
      openGroupId = null; // the group was deleted meanwhile
      members = null;
    }
  }

  async function refresh() {
    const mine = ++sequence;
    const [{ directory }] = await Promise.all([graphql(GROUPS, { id: directoryId, ...paging.request }), loadMembers()]);
    if (mine !== sequence) return;
    connection = directory.groups;
    paging.settle(connection.pageInfo);
    render();
  }

  function toggle(groupId) {
    openGroupId = openGroupId === groupId ? null : groupId;
    members = null;
    render();
    loadMembers()
      .then(render)
      .catch(onError);
  }

  let duplicateNames = new Set();

  function groupRows(group) {
    const open = group.id === openGroupId;
    const panelId = `members-${group.id}`;
    const rows = [
      h(
        "tr",
        { dataset: { group: group.id } },
        h(
          "th",
          { scope: "row" },
          group.name,
          // Identity providers may push two groups with one name: their ids tell them apart.
          duplicateNames.has(group.name) ? h("span", { class: "muted group-id" }, ` ${group.id}`) : null,
        ),
        h("td", { class: "number", dataset: { field: "member-count" } }, group.memberCount.toLocaleString()),
        h(
          "td",
          { class: "row-action" },
          h(
            "button",
            {
              type: "button",
              class: "secondary small",
              "aria-expanded": String(open),
              "aria-controls": open ? panelId : null,
              dataset: { focus: `group-${group.id}` },
              onclick: () => toggle(group.id),
            },
            open ? "Hide" : "Members",
          ),
        ),
      ),
    ];
    if (open) {
      rows.push(
        h("tr", { class: "members-row", id: panelId }, h("td", { colspan: "3" }, membersList(group, members))),
      );
    }
    return rows;
  }

  function render() {
    if (connection === null) return;
    const groups = newestFirst(connection);
    const seen = new Set();
    duplicateNames = new Set(groups.filter((g) => seen.has(g.name) || !seen.add(g.name)).map((g) => g.name));
    heading.textContent = `Groups (${connection.totalCount.toLocaleString()})`;
    if (groups.length === 0) {
      rerender(
        results,
        emptyState("No groups yet", "Groups and their memberships appear here as the identity provider pushes them."),
      );
      return;
    }
    rerender(
      results,
      dataTable({
        id: "groups",
        caption: plural(connection.totalCount, "group"),
        columns: [{ label: "Name" }, { label: "Members", class: "number" }, { label: "Actions", hidden: true }],
        rows: groups.map(groupRows),
      }),
      pager({ name: "groups", paging, connection, shown: groups.length, onChange: () => refresh().catch(onError) }),
    );
  }

  return { element, refresh };
}
