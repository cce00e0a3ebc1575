import { apiKey, describe, graphql } from "../api.js";
import { h, heading } from "../dom.js";

const CHECK_KEY = "query CheckKey { organizations(first: 1) { totalCount } }";

export async function signInView(main, { notice }) {
  const input = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "api-key-help",
  });
  const error = h("p", { class: "form-error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    { class: "stack", novalidate: true },
    h("label", { for: "api-key" }, "API key"),
    input,
    h(
      "p",
      { id: "api-key-help", class: "hint" },
      "On its first start, ",
      h("code", null, "dsync serve"),
      " printed an admin key. ",
      h("code", null, "dsync api-keys create"),
      " makes more. The key stays in this browser tab only.",
    ),
    error,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    error.textContent = "";
    if (!key) {
      error.textContent = "Paste an API key to sign in.";
      input.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = "Signing in…";
    try {
      await graphql(CHECK_KEY, {}, { key });
      apiKey.set(key);
      location.hash = "#/organizations";
    } catch (failure) {
      error.textContent = describe(failure);
      submit.disabled = false;
      submit.textContent = "Sign in";
      input.focus();
    }
  });
  main.append(
    h(
      "section",
      { class: "card narrow sign-in" },
      heading("Sign in"),
      notice ? h("p", { class: "notice", role: "status" }, notice) : null,
      form,
    ),
  );
  input.focus();
}
