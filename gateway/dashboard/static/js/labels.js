// Words for the API's values, as a person reads them.

export const DIRECTORY_TYPES = [
  { value: "JUMPCLOUD", label: "JumpCloud SCIM v2.0" },
  { value: "OKTA", label: "Okta SCIM v2.0" },
  { value: "AZURE", label: "Microsoft Entra ID SCIM v2.0" },
  { value: "ONELOGIN", label: "OneLogin SCIM v2.0" },
  { value: "GENERIC", label: "Generic SCIM v2.0" },
];

export function typeLabel(value) {
  return DIRECTORY_TYPES.find((type) => type.value === value)?.label ?? value;
}

const EVENT_LABELS = {
  "dsync.activated": "Directory linked",
  "dsync.deleted": "Directory deleted",
  "dsync.user.created": "User created",
  "dsync.user.updated": "User updated",
  "dsync.user.deleted": "User deleted",
  "dsync.group.created": "Group created",
  "dsync.group.updated": "Group updated",
  "dsync.group.deleted": "Group deleted",
  "dsync.group.user_added": "Added to group",
  "dsync.group.user_removed": "Removed from group",
};

export function eventLabel(name) {
  return EVENT_LABELS[name] ?? name;
}

export function userLabel(user) {
  if (!user) return "";
  return user.email || user.userName || user.id;
}

export function personName(user) {
  const name = [user.firstName, user.lastName].filter(Boolean).join(" ");
  return name || user.displayName || user.userName;
}

export function eventSubject(event) {
  const user = userLabel(event.user);
  const group = event.group?.name ?? "";
  if (event.user && event.group) return `${user} → ${group}`;
  return user || group;
}

export function plural(count, one, many = `${one}s`) {
  return `${count.toLocaleString()} ${count === 1 ? one : many}`;
}
