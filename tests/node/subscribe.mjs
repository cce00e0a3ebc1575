// Subscribes with the graphql-ws client (what Apollo Client, urql and Relay use) the way a frontend resumes: after
// `dropAfter` events the socket is dropped, and a new subscription resumes after the last cursor received.
// Arguments: one JSON object {url, key, query, variables, field, count, dropAfter}. Prints "resumed" once the
// second subscription is on, then one JSON line: the cursors received, in order.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const { url, key, query, variables, field, count, dropAfter } = JSON.parse(process.argv[2]);
const cursors = [];

function run(after, stopAt, onStart) {
  const client = createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${key}` },
    retryAttempts: 0,
    on: { connected: onStart },
  });
  return new Promise((resolve, reject) => {
    const dispose = client.subscribe(
      { query, variables: { ...variables, after } },
      {
        next(message) {
          if (message.errors) return reject(new Error(JSON.stringify(message.errors)));
          const value = message.data[field];
          for (const item of Array.isArray(value) ? value : [value]) cursors.push(item.cursor);
          if (cursors.length >= stopAt) {
            // Dropped, not completed: terminate() closes the socket abruptly, as a lost network would.
            dispose();
            client.terminate();
            resolve();
          }
        },
        error: reject,
        complete: resolve,
      },
    );
  });
}

await run("0", dropAfter, () => {});
await run(cursors.at(-1), count, () => process.stdout.write("resumed\n"));
process.stdout.write(JSON.stringify(cursors) + "\n");
process.exit(0);
