// The endpoint and the bearer token of a new (or re-keyed) directory, shown once, with the provider's steps.

import { copyButton, h, rich } from "../dom.js";

export const STEPS = {
  JUMPCLOUD: [
    "In JumpCloud, open **SSO Applications**, pick the application and open its **Identity Management** tab; " +
      "choose **SCIM 2.0** as the API type.",
    "**Base URL**: paste the Endpoint. **Token Key**: paste the Bearer token. Enter a **Test User Email**.",
    "Press **Test Connection**. JumpCloud looks up, creates and removes a test user; the directory turns **linked**.",
    "Turn **Group Management** on, then **Activate** the integration and save.",
    "On the **User Groups** tab, assign the groups to sync: their users, groups and memberships appear on the " +
      "directory page as they arrive.",
  ],
  OKTA: [
    "In Okta, open the app integration's **General** tab and enable **SCIM** provisioning.",
    "Under **Provisioning → Integration**: **SCIM connector base URL** = the Endpoint, **Unique identifier field " +
      "for users** = `userName`, **Authentication Mode** = HTTP Header, **Authorization** = the Bearer token.",
    "Press **Test Connector Configuration**, then **Save**.",
    "Under **Provisioning → To App**, enable creating, updating and deactivating users.",
    "Assign people or groups on **Assignments**, and pick groups on **Push Groups**.",
  ],
  AZURE: [
    "In Microsoft Entra ID, open **Enterprise applications**, the application, then **Provisioning**; set " +
      "**Provisioning Mode** to **Automatic**.",
    "**Tenant URL** = the Endpoint, **Secret Token** = the Bearer token. Press **Test Connection**, then **Save**.",
    "Assign users and groups under **Users and groups**, then **Start provisioning**. Entra ID syncs in cycles; " +
      "**Provision on demand** sends one user at once.",
  ],
  ONELOGIN: [
    "In OneLogin, open the SCIM application's **Configuration** tab.",
    "**SCIM Base URL** = the Endpoint, **SCIM Bearer Token** = the Bearer token; enable the API connection and save.",
    "On the **Provisioning** tab, turn provisioning on and save; then assign users to the application.",
  ],
  GENERIC: [
    "Give your SCIM 2.0 client the Endpoint as its base URL (`/Users`, `/Groups`, `/ServiceProviderConfig` …).",
    "Send `Authorization: Bearer <token>` with the Bearer token on every request.",
    "The first authorized request links the directory.",
  ],
};

function secretField(id, label, value, hint) {
  return h(
    "div",
    { class: "secret" },
    h("span", { class: "secret-label", id: `${id}-label` }, label),
    h(
      "div",
      { class: "secret-row" },
      h("code", { id, "aria-labelledby": `${id}-label` }, value),
      copyButton(() => value, label),
    ),
    hint ? h("p", { class: "hint" }, hint) : null,
  );
}

export function credentialsPanel({ endpoint, bearerToken, type, rotated = false }) {
  const steps = STEPS[type] ?? STEPS.GENERIC;
  return h(
    "section",
    { class: "card credentials", "aria-labelledby": "credentials-title" },
    h("h2", { id: "credentials-title" }, rotated ? "New bearer token" : "Connect the identity provider"),
    h(
      "p",
      { class: "warning" },
      rotated
        ? "The old token stopped working. This one is shown only now: paste it into the identity provider before " +
            "leaving this page."
        : "The bearer token is shown only now (the gateway keeps just its hash). Copy it before leaving this page.",
    ),
    secretField("endpoint", "Endpoint", endpoint, type === "JUMPCLOUD" ? "JumpCloud calls it Base URL." : ""),
    secretField("bearer-token", "Bearer token", bearerToken, type === "JUMPCLOUD" ? "JumpCloud calls it Token Key." : ""),
    rotated
      ? null
      : [h("h3", null, "Steps"), h("ol", { class: "steps" }, steps.map((step) => h("li", null, rich(step))))],
  );
}
