// The dashboard's only server: /graphql. The API key lives in sessionStorage (gone with the tab), never in a URL.

const STORAGE_KEY = "dsync.apiKey";

export const apiKey = {
  get: () => sessionStorage.getItem(STORAGE_KEY),
  set: (key) => sessionStorage.setItem(STORAGE_KEY, key),
  clear: () => sessionStorage.removeItem(STORAGE_KEY),
};

export class ApiError extends Error {
  constructor(message, code, detail = "") {
    super(message);
    this.code = code;
    this.detail = detail;
  }
}

const MESSAGES = {
  UNAUTHENTICATED: "The gateway did not accept this API key: it is incomplete, wrong or has been revoked.",
  FORBIDDEN: "This API key belongs to a single organization, so it cannot do that. Sign in with an admin key.",
  NOT_FOUND: "Not found: it may have been deleted, or this API key cannot see it.",
  TIMEOUT: "The gateway took too long to answer. Try again in a moment.",
};

export function friendlyMessage(code, serverMessage) {
  if (code === "BAD_USER_INPUT") {
    const text = serverMessage.trim();
    return `${text.charAt(0).toUpperCase()}${text.slice(1)}${/[.!?]$/.test(text) ? "" : "."}`;
  }
  return MESSAGES[code] ?? `Something went wrong: ${serverMessage}`;
}

export function errorFromGraphQL(error) {
  const code = error?.extensions?.code ?? "ERROR";
  const message = error?.message ?? "unknown error";
  return new ApiError(friendlyMessage(code, message), code, message);
}

export function describe(error) {
  return error instanceof ApiError ? error.message : `Something went wrong in the page: ${error.message}`;
}

// A key the gateway refuses mid-session: main.js signs out and says why.
export function announceRefusedKey() {
  window.dispatchEvent(new CustomEvent("dsync:key-refused"));
}

export async function graphql(query, variables = {}, { key = apiKey.get() } = {}) {
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new ApiError("Cannot reach the gateway. Check that it is running and that you are online.", "NETWORK");
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: reported below by status
  }
  if (body?.errors?.length) {
    const error = errorFromGraphQL(body.errors[0]);
    if (error.code === "UNAUTHENTICATED" && key === apiKey.get()) announceRefusedKey();
    throw error;
  }
  if (!response.ok || !body?.data) {
    throw new ApiError(
      `The gateway answered with an error (HTTP ${response.status}). Try again; if it persists, check its log.`,
      "HTTP",
    );
  }
  return body.data;
}
