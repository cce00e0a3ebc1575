import { h } from "../dom.js";

const TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  stopped: "Not live",
};

// Whether the page is following changes as they happen; announced politely to screen readers.
export function liveIndicator() {
  const element = h("span", { class: "live", role: "status", dataset: { status: "connecting" } }, TEXT.connecting);
  return {
    element,
    update(status) {
      if (element.dataset.status === "failed") return;
      element.dataset.status = status;
      element.textContent = TEXT[status] ?? status;
    },
    fail(message) {
      element.dataset.status = "failed";
      element.textContent = "Not live";
      element.title = message;
    },
  };
}
