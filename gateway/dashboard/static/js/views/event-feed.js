// The directory's change log as it happens, newest first.

import { emptyState, formatTime, h, replace } from "../dom.js";
import { eventLabel, eventSubject } from "../labels.js";

const KEPT = 100;

export const EVENT_FIELDS = "id cursor event occurredAt user { id userName email state } group { id name }";

function eventItem(event) {
  const inactive = event.event === "dsync.user.updated" && event.user?.state === "INACTIVE";
  return h(
    "li",
    { dataset: { event: event.event, cursor: event.cursor } },
    h("time", { datetime: event.occurredAt }, formatTime(event.occurredAt)),
    h("span", { class: "event-label" }, eventLabel(event.event), inactive ? " (inactive)" : ""),
    h("span", { class: "event-subject wrap" }, eventSubject(event)),
    h("code", { class: "event-name" }, event.event),
  );
}

export function eventFeed() {
  // Not announced as it grows: an initial sync writes thousands of events a minute.
  const list = h("ol", { id: "events", class: "feed", role: "log", "aria-live": "off", "aria-label": "Events, newest first" });
  const empty = emptyState("No events yet", "Each change the identity provider makes shows up here the moment it is stored.");
  const body = h("div", null, empty);
  let count = 0;

  function add(event) {
    if (count === 0) replace(body, list);
    list.prepend(eventItem(event));
    count += 1;
    if (count > KEPT) {
      list.lastElementChild.remove();
      count -= 1;
    }
  }

  return { body, add };
}
