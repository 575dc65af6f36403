-- 0003 summary_edits: how many times something other than the declaration (e.g. /escalate) edited the pinned summary.
-- Read and bumped under the summary lock (IncidentStore.summary_lock), so the declaration's final refresh reads the
-- message back from Slack only when someone else changed it. Adding a column with a constant default is instant.

ALTER TABLE incidents ADD COLUMN summary_edits integer NOT NULL DEFAULT 0 CHECK (summary_edits >= 0);
