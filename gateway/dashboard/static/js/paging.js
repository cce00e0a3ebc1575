// Newest first over the API's keyset connections (ordered oldest first): the newest page is `last: N`; older
// pages go `before` the page's first cursor, newer ones `after` its last. Items are shown reversed.

import { h } from "./dom.js";

export class NewestFirst {
  constructor(size) {
    this.size = size;
    this.reset();
  }

  reset() {
    this.request = { last: this.size };
  }

  older(pageInfo) {
    this.request = { last: this.size, before: pageInfo.startCursor };
  }

  newer(pageInfo) {
    this.request = { first: this.size, after: pageInfo.endCursor };
  }

  // After moving newer: once no newer page is left, follow the newest page again so live additions show up.
  settle(pageInfo) {
    if (this.request.first !== undefined && !pageInfo.hasNextPage) this.reset();
  }

  get atNewest() {
    return this.request.last !== undefined && this.request.before === undefined;
  }
}

export function newestFirst(connection) {
  return connection.edges.map((edge) => edge.node).reverse();
}

export function pager({ name, paging, connection, shown, onChange }) {
  const { pageInfo } = connection;
  const newer = pageInfo.hasNextPage;
  const older = pageInfo.hasPreviousPage;
  if (!newer && !older) return null;
  return h(
    "div",
    { class: "pager" },
    h(
      "button",
      {
        type: "button",
        class: "secondary",
        disabled: !newer,
        dataset: { focus: `${name}-newer` },
        onclick: () => {
          paging.newer(pageInfo);
          onChange();
        },
      },
      "← Newer",
    ),
    h("span", { class: "pager-count" }, `${shown} of ${connection.totalCount.toLocaleString()}`),
    h(
      "button",
      {
        type: "button",
        class: "secondary",
        disabled: !older,
        dataset: { focus: `${name}-older` },
        onclick: () => {
          paging.older(pageInfo);
          onChange();
        },
      },
      "Older →",
    ),
  );
}
