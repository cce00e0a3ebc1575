// The directory's SCIM request log (newest first, errors highlighted) and its health: last request, last error,
// errors in the last hour, last wrong token. Refreshed by the directory page when something happens.

import { graphql } from "../api.js";
import { h, replace } from "../dom.js";

const REQUESTS = `query DirectoryRequests($id: ID!, $errorsOnly: Boolean!) {
  directory(id: $id) {
    health { lastRequestAt lastErrorAt lastError errorsLastHour lastRejectedTokenAt }
    requests(first: 50, errorsOnly: $errorsOnly) { id at method path filter status scimType detail durationMs resourceId }
  }
}`;

const when = (value) => (value ? new Date(value).toLocaleString() : "never");

export function requestLog({ directoryId, onError }) {
  let errorsOnly = false;
  const health = h("dl", { class: "stats", id: "directory-health" });
  const rows = h("tbody");
  const toggle = h("input", {
    type: "checkbox",
    id: "errors-only",
    onchange: (event) => ((errorsOnly = event.target.checked), refresh()),
  });
  const element = h(
    "section",
    { class: "card request-log", "aria-labelledby": "requests-title" },
    h("h2", { id: "requests-title" }, "SCIM requests"),
    health,
    h("label", { class: "check" }, toggle, " Errors only"),
    h(
      "div",
      { class: "table-scroll" },
      h(
        "table",
        { id: "request-log" },
        h("thead", null, h("tr", null, ["Time", "Request", "Status", "Detail", "ms"].map((c) => h("th", null, c)))),
        rows,
      ),
    ),
  );

  async function refresh() {
    try {
      const { directory } = await graphql(REQUESTS, { id: directoryId, errorsOnly });
      const state = directory.health;
      replace(
        health,
        [
          ["Last request", when(state.lastRequestAt)],
          ["Errors (last hour)", String(state.errorsLastHour)],
          ["Last error", state.lastError ? `${state.lastError} (${when(state.lastErrorAt)})` : "none"],
          ["Last wrong token", when(state.lastRejectedTokenAt)],
        ].map(([label, value]) => h("div", { class: "stat" }, h("dt", null, label), h("dd", null, value))),
      );
      replace(
        rows,
        directory.requests.length
          ? directory.requests.map((r) =>
              h(
                "tr",
                { class: r.status >= 400 ? "failed" : null, dataset: { status: r.status } },
                h("td", null, new Date(r.at).toLocaleTimeString()),
                h("td", null, `${r.method} ${r.path.replace(`/scim/v2/${directoryId}`, "")}`, r.filter ? ` ?filter=${r.filter}` : ""),
                h("td", null, String(r.status)),
                h("td", null, [r.scimType, r.detail].filter(Boolean).join(": ")),
                h("td", null, r.durationMs.toFixed(1)),
              ),
            )
          : h("tr", null, h("td", { colspan: 5 }, "No SCIM requests yet.")),
      );
    } catch (failure) {
      onError(failure);
    }
  }

  return { element, refresh };
}
