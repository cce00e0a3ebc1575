// Verifies webhook deliveries with the official WorkOS Node SDK, unchanged: one JSON object per stdin line
// ({body, signature, secret}) in, one result per line ({ok, id, event, userEmail} or {ok: false, error}) out.
import { createInterface } from "node:readline";
import { WorkOS } from "@workos-inc/node";

const workos = new WorkOS("sk_test_unused", { clientId: "client_unused" });
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const { body, signature, secret } = JSON.parse(line);
  try {
    const event = await workos.webhooks.constructEvent({ payload: JSON.parse(body), sigHeader: signature, secret });
    const user = event.data && (event.data.user ?? (event.data.object === "directory_user" ? event.data : null));
    process.stdout.write(JSON.stringify({ ok: true, id: event.id, event: event.event, userEmail: user ? user.email : null }) + "\n");
  } catch (error) {
    process.stdout.write(JSON.stringify({ ok: false, error: String(error && error.message) }) + "\n");
  }
}
