-- 0004 resolved_by: who resolved the incident (`/incident resolve`), next to resolved_at, so a second resolve can say
-- "already resolved at 03:31 UTC by <@U…>". Nullable, no default: instant on a table of any size.

ALTER TABLE incidents ADD COLUMN resolved_by text;
