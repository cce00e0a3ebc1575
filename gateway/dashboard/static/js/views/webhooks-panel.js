// An organization's webhook endpoints: list (state, last error, latest attempts), create (the signing secret is
// shown once), resume, delete.

import { describe, graphql } from "../api.js";
import { badge, confirmAction, copyButton, dataTable, emptyState, errorBox, formatTime, h, rerender, toast } from "../dom.js";

const ENDPOINTS = `query WebhookEndpoints($id: ID!) {
  webhookEndpoints(organizationId: $id) {
    id url events enabled state failedAttempts lastError nextAttemptAt
    attempts(first: 10) { eventId statusCode durationMs error nextAttemptAt createdAt }
  }
}`;
const CREATE = `mutation CreateWebhookEndpoint($organizationId: ID!, $url: String!, $events: [String!]) {
  createWebhookEndpoint(organizationId: $organizationId, url: $url, events: $events) { secret webhookEndpoint { id url } }
}`;
const RESUME = `mutation ResumeWebhookEndpoint($id: ID!) { resumeWebhookEndpoint(id: $id) { id state } }`;
const DELETE = `mutation DeleteWebhookEndpoint($id: ID!) { deleteWebhookEndpoint(id: $id) { id } }`;

function attemptsTable(endpoint) {
  return dataTable({
    id: `attempts-${endpoint.id}`,
    caption: "Latest delivery attempts",
    columns: [{ label: "When" }, { label: "Event" }, { label: "Status" }, { label: "Duration", class: "number" }, { label: "Error" }],
    rows: endpoint.attempts.map((attempt) =>
      h(
        "tr",
        null,
        h("td", null, formatTime(attempt.createdAt)),
        h("td", null, h("code", null, attempt.eventId)),
        h("td", null, attempt.statusCode === null ? "no answer" : String(attempt.statusCode)),
        h("td", { class: "number" }, `${Math.round(attempt.durationMs)} ms`),
        h("td", null, attempt.error ?? "", attempt.nextAttemptAt ? ` (retry ${formatTime(attempt.nextAttemptAt)})` : ""),
      ),
    ),
  });
}

function endpointCard(endpoint, reload) {
  const resume = h("button", { type: "button", class: "secondary" }, "Resume");
  resume.addEventListener("click", async () => {
    try {
      await graphql(RESUME, { id: endpoint.id });
      toast("Deliveries resumed");
      reload();
    } catch (failure) {
      toast(describe(failure));
    }
  });
  const remove = h("button", { type: "button", class: "secondary danger" }, "Delete");
  remove.addEventListener("click", async () => {
    const confirmed = await confirmAction({
      title: "Delete this webhook endpoint?",
      message: `${endpoint.url} stops receiving events.`,
      confirmLabel: "Delete",
      danger: true,
    });
    if (!confirmed) return;
    try {
      await graphql(DELETE, { id: endpoint.id });
      reload();
    } catch (failure) {
      toast(describe(failure));
    }
  });
  const failing = endpoint.state === "failed" || endpoint.failedAttempts > 0;
  return h(
    "div",
    { class: "webhook-endpoint stack", dataset: { webhookEndpoint: endpoint.id } },
    h("p", null, h("code", null, endpoint.url), " ", badge(endpoint.enabled ? endpoint.state : "disabled")),
    h("p", { class: "meta" }, endpoint.events.length ? endpoint.events.join(", ") : "All events"),
    endpoint.lastError
      ? h("p", { class: "warning" }, `Last error: ${endpoint.lastError}`, endpoint.nextAttemptAt ? ` · next attempt ${formatTime(endpoint.nextAttemptAt)}` : "")
      : null,
    endpoint.attempts.length ? attemptsTable(endpoint) : h("p", { class: "hint" }, "No delivery yet."),
    h("div", { class: "actions" }, failing ? resume : null, remove),
  );
}

function createForm(organizationId, onCreated) {
  const url = h("input", { id: "webhook-url", name: "url", type: "url", required: true, placeholder: "https://app.example.com/webhooks/dsync" });
  const events = h("input", { id: "webhook-events", name: "events", placeholder: "dsync.user.created, dsync.user.deleted" });
  const error = h("p", { class: "form-error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary" }, "Add endpoint");
  const form = h(
    "form",
    { class: "stack", id: "create-webhook", novalidate: true },
    h("h3", null, "Add an endpoint"),
    h("label", { for: "webhook-url" }, "URL"),
    url,
    h("label", { for: "webhook-events" }, "Events"),
    events,
    h("p", { class: "hint" }, "Comma-separated event names; empty: every event."),
    error,
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const names = events.value.split(",").map((name) => name.trim()).filter(Boolean);
    submit.disabled = true;
    try {
      const { createWebhookEndpoint } = await graphql(CREATE, { organizationId, url: url.value.trim(), events: names });
      url.value = "";
      events.value = "";
      onCreated(createWebhookEndpoint);
    } catch (failure) {
      error.textContent = describe(failure);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function secretPanel(created) {
  return h(
    "div",
    { class: "secret", id: "webhook-secret" },
    h("p", { class: "warning" }, `Signing secret of ${created.webhookEndpoint.url}: shown only now. Copy it into your application.`),
    h("div", { class: "secret-row" }, h("code", null, created.secret), copyButton(() => created.secret, "signing secret")),
  );
}

export function webhooksPanel(organizationId, signal) {
  const list = h("div", { "aria-live": "polite" });
  const secret = h("div");
  async function reload() {
    try {
      const { webhookEndpoints } = await graphql(ENDPOINTS, { id: organizationId });
      if (signal.aborted) return;
      rerender(
        list,
        webhookEndpoints.length
          ? webhookEndpoints.map((endpoint) => endpointCard(endpoint, reload))
          : emptyState("No webhook endpoints", "Add one to receive this organization's events, signed like WorkOS's."),
      );
    } catch (failure) {
      if (!signal.aborted) rerender(list, errorBox(describe(failure), reload));
    }
  }
  const form = createForm(organizationId, (created) => {
    rerender(secret, secretPanel(created));
    reload();
  });
  reload();
  return { element: h("section", { class: "card", id: "webhooks" }, h("h2", null, "Webhooks"), secret, list, form), reload };
}
