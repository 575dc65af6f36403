-- 0001 initial schema: incidents, their declare-workflow steps, dedup keys, the timeline.
-- Applied by chatops.db.migrate inside one transaction (so no CREATE INDEX CONCURRENTLY here).

CREATE FUNCTION chatops_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TABLE incidents (
    id              text PRIMARY KEY,              -- human id chosen by the caller, e.g. inc-2026-04-22-0247-checkout
    severity        text NOT NULL,
    service         text NOT NULL,
    status          text NOT NULL DEFAULT 'declared'
                    CHECK (status IN ('declared', 'mitigated', 'resolved', 'postmortem_shipped', 'archived')),
    ic_user_id      text NOT NULL,
    declared_by     text NOT NULL,
    channel_id      text UNIQUE,                   -- the war-room channel, once created
    channel_name    text,
    declared_at     timestamptz NOT NULL,
    resolved_at     timestamptz,
    policy_digest   text NOT NULL,                 -- digest of the policy snapshot in force at declaration
    summary_ts      text,                          -- Slack ts of the pinned summary message
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX incidents_open_by_service ON incidents (service) WHERE status IN ('declared', 'mitigated');

CREATE TRIGGER incidents_touch BEFORE UPDATE ON incidents
    FOR EACH ROW EXECUTE FUNCTION chatops_touch_updated_at();

-- One row per step of the declare workflow, so a retry or a restart finishes the work exactly once.
CREATE TABLE incident_steps (
    incident_id     text NOT NULL REFERENCES incidents (id),
    step            text NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'done', 'failed', 'skipped')),
    detail          jsonb NOT NULL DEFAULT '{}'::jsonb,
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (incident_id, step)
);

-- Keys of things processed once across processes: a slash command's trigger_id, a Slack event_id, ...
CREATE TABLE dedup_keys (
    key             text PRIMARY KEY,
    scope           text NOT NULL,
    incident_id     text REFERENCES incidents (id),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX dedup_keys_created_at ON dedup_keys (created_at);

-- The append-only timeline. occurred_at is the source's time (the causal order); received_at is when we heard.
CREATE TABLE timeline_events (
    id              bigserial PRIMARY KEY,
    incident_id     text NOT NULL REFERENCES incidents (id),
    type            text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    actor           text,
    source          text NOT NULL,
    summary         text NOT NULL,
    payload         jsonb NOT NULL DEFAULT '{}'::jsonb,
    dedup_key       text,
    -- NULLs are distinct: events without a dedup_key never conflict.
    CONSTRAINT timeline_events_source_dedup_key UNIQUE (source, dedup_key)
);

CREATE INDEX timeline_events_by_time ON timeline_events (incident_id, occurred_at, id);
CREATE INDEX timeline_events_by_type ON timeline_events (incident_id, type, occurred_at);
