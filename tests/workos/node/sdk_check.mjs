// Drives the gateway with the official WorkOS Node SDK, configured only with a host, a port and an API key, and
// prints what it read as one JSON object (tests/workos/test_sdks.py checks it).
import { WorkOS, NotFoundException, UnauthorizedException } from "@workos-inc/node";

const { DSYNC_PORT, DSYNC_KEY, DIRECTORY_ID, GROUP_ID } = process.env;
const options = { apiHostname: "127.0.0.1", port: Number(DSYNC_PORT), https: false };
const workos = new WorkOS(DSYNC_KEY, options);

async function pages(fetchPage, cursorName) {
  const ids = [];
  let cursor;
  for (;;) {
    const page = await fetchPage(cursor);
    ids.push(page.data.map((item) => item.id));
    cursor = page.listMetadata[cursorName];
    if (!cursor) return ids;
  }
}

const directories = await workos.directorySync.listDirectories();
const directory = await workos.directorySync.getDirectory(DIRECTORY_ID);
const forward = await pages(
  (after) => workos.directorySync.listUsers({ directory: DIRECTORY_ID, limit: 100, after }),
  "after",
);
const backward = await pages(
  (before) => workos.directorySync.listUsers({ directory: DIRECTORY_ID, limit: 100, before: before ?? forward.at(-1)[0] }),
  "before",
);
const ascending = await pages(
  (after) => workos.directorySync.listUsers({ directory: DIRECTORY_ID, limit: 100, order: "asc", after }),
  "after",
);
const members = await workos.directorySync.listUsers({ group: GROUP_ID });
const user = await workos.directorySync.getUser(members.data[0].id);
const groups = await workos.directorySync.listGroups({ directory: DIRECTORY_ID });
const group = await workos.directorySync.getGroup(GROUP_ID);
const firstEvents = await workos.events.listEvents({ events: ["dsync.user.created", "dsync.group.user_added"], limit: 5 });
const laterEvents = await workos.events.listEvents({
  events: ["dsync.user.created", "dsync.group.user_added"],
  limit: 100,
  after: firstEvents.listMetadata.after,
});

let notFound = null;
try {
  await workos.directorySync.getUser("directory_user_missing");
} catch (error) {
  notFound = { name: error.name, status: error.status, code: error.code, message: error.message };
}
let unauthorized = null;
try {
  await new WorkOS("dsync_key_wrong", options).directorySync.listDirectories();
} catch (error) {
  unauthorized = { name: error.name, status: error.status, isUnauthorized: error instanceof UnauthorizedException };
}

console.log(
  JSON.stringify({
    directories: directories.data,
    directory,
    forward,
    backward,
    ascending,
    members: members.data.map((u) => u.id),
    user,
    groups: groups.data,
    group,
    firstEvents: firstEvents.data,
    firstEventsAfter: firstEvents.listMetadata.after,
    laterEvents: laterEvents.data,
    notFound,
    notFoundIsNotFound: notFound !== null,
    unauthorized,
  }),
);
