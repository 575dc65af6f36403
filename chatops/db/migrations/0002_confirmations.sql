-- 0002 confirmations: "are you sure?" questions asked before a side-effect command started from a button runs.
-- Stored here (not in memory) so that a restart, or another replica receiving the click, can answer them.

CREATE TABLE confirmations (
    token           text PRIMARY KEY,              -- random; the value of the Confirm / Cancel buttons
    user_id         text NOT NULL,                 -- only this user ...
    channel_id      text NOT NULL,                 -- ... in this channel may answer
    command         text NOT NULL,                 -- the slash command, e.g. /restart-consumer
    args_text       text NOT NULL,                 -- its argument text
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    decided_at      timestamptz,
    decision        text CHECK (decision IN ('confirmed', 'cancelled')),
    CHECK (expires_at > created_at),
    CHECK ((decided_at IS NULL) = (decision IS NULL))
);

CREATE INDEX confirmations_expires_at ON confirmations (expires_at);
