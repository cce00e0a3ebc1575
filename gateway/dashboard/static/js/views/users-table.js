// A directory's users: search, state filter, newest first, paged; `refresh()` re-reads the current page.

import { graphql } from "../api.js";
import { badge, dataTable, emptyState, h, rerender } from "../dom.js";
import { personName, plural } from "../labels.js";
import { NewestFirst, newestFirst, pager } from "../paging.js";

const PAGE_SIZE = 25;

const USERS = `query DirectoryUsers($id: ID!, $first: Int, $after: String, $last: Int, $before: String,
    $state: UserState, $search: String) {
  directory(id: $id) {
    users(first: $first, after: $after, last: $last, before: $before, state: $state, search: $search) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { node { id userName email firstName lastName displayName state role customAttributes groups { id name } } }
    }
  }
}`;

// An address breaks only before its "@" or its dots (never mid-word), when it must break at all.
function address(value) {
  return value.split(/(?=[@.])/).flatMap((part, index) => (index ? [h("wbr"), part] : [part]));
}

// Custom attributes as "name: value" lines (a manager's id too: the directory's user ids are long but exact).
function attributes(values) {
  const entries = Object.entries(values ?? {});
  if (!entries.length) return "—";
  return entries.flatMap(([name, value], index) => [index ? h("br") : null, h("span", { class: "muted" }, `${name}: `), String(value)]);
}

function userRow(user) {
  return h(
    "tr",
    { dataset: { user: user.id } },
    h(
      "th",
      { scope: "row" },
      personName(user),
      // On a phone the email column is hidden: the address goes under the name.
      h("span", { class: "muted address show-narrow" }, address(user.email ?? user.userName)),
    ),
    h("td", { class: "address hide-narrow" }, address(user.email ?? user.userName)),
    h("td", null, badge(user.state)),
    h("td", { class: "user-role" }, user.role ? h("code", null, user.role) : "—"),
    h("td", { class: "hide-narrow" }, user.groups.map((group) => group.name).join(", ") || "—"),
    h("td", { class: "hide-narrow user-attributes" }, attributes(user.customAttributes)),
  );
}

export function usersTable({ directoryId, onError }) {
  const paging = new NewestFirst(PAGE_SIZE);
  const filters = { search: "", state: null };
  let sequence = 0;

  const search = h("input", {
    id: "user-search",
    type: "search",
    placeholder: "Name, email or username",
    autocomplete: "off",
  });
  const state = h(
    "select",
    { id: "user-state" },
    h("option", { value: "" }, "All states"),
    h("option", { value: "ACTIVE" }, "Active"),
    h("option", { value: "INACTIVE" }, "Inactive"),
  );
  const heading = h("h2", { id: "users-title" }, "Users");
  const results = h("div", { "aria-live": "polite" });
  const element = h(
    "section",
    { class: "card", "aria-labelledby": "users-title" },
    heading,
    h(
      "div",
      { class: "filters" },
      h("div", { class: "field" }, h("label", { for: "user-search" }, "Search"), search),
      h("div", { class: "field" }, h("label", { for: "user-state" }, "State"), state),
    ),
    results,
  );

  let searchTimer = null;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      filters.search = search.value.trim();
      paging.reset();
      refresh().catch(onError);
    }, 250);
  });
  state.addEventListener("change", () => {
    filters.state = state.value || null;
    paging.reset();
    refresh().catch(onError);
  });

  async function refresh() {
    const mine = ++sequence;
    const { directory } = await graphql(USERS, {
      id: directoryId,
      ...paging.request,
      state: filters.state,
      search: filters.search || null,
    });
    if (mine !== sequence) return; // a newer request (another filter or page) is on its way
    const connection = directory.users;
    paging.settle(connection.pageInfo);
    render(connection);
  }

  function render(connection) {
    const users = newestFirst(connection);
    const filtered = Boolean(filters.search || filters.state);
    heading.textContent = `Users (${connection.totalCount.toLocaleString()})`;
    if (users.length === 0) {
      rerender(
        results,
        filtered
          ? emptyState("No matching users", "No user matches this search and state. Try fewer letters or all states.")
          : emptyState(
              "No users yet",
              "Users appear here as soon as the identity provider provisions them, without reloading.",
            ),
      );
      return;
    }
    rerender(
      results,
      dataTable({
        id: "users",
        caption: plural(connection.totalCount, "user"),
        columns: [
          { label: "Name" },
          { label: "Email", class: "hide-narrow" },
          { label: "State" },
          { label: "Role" },
          { label: "Groups", class: "hide-narrow" },
          { label: "Attributes", class: "hide-narrow" },
        ],
        rows: users.map(userRow),
      }),
      pager({ name: "users", paging, connection, shown: users.length, onChange: () => refresh().catch(onError) }),
    );
  }

  return { element, refresh };
}
