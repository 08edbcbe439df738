//! Versioned schema migrations.
//!
//! Every relay of a fleet may start at the same moment and run `migrate`, so
//! the whole run happens in one transaction under a transaction-level
//! advisory lock: the second runner waits, then finds the version already
//! current and does nothing. Each step is plain SQL applied once, recorded in
//! `schema_version`; steps are never edited once released, only appended.

use crate::error::FleetError;

/// Key of the advisory lock that serialises migrations ("ASSNTFLT").
const MIGRATION_LOCK: i64 = 0x4153_534e_5446_4c54;

/// The role a relay's login is granted: it may read and write the fleet's
/// tables but only INSERT (and read) the audit tables.
pub const WRITER_ROLE: &str = "assent_fleet_writer";

/// Versions before and after a [`crate::migrate`] run (equal when there was
/// nothing to do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationReport {
    pub from: i32,
    pub to: i32,
}

/// The migrations, version 1 upward.
const MIGRATIONS: &[&str] = &[V1];

/// The version this build brings the database to.
pub const LATEST_VERSION: i32 = MIGRATIONS.len() as i32;

/// Version 1: everything fleet mode needs.
///
/// Times are unix milliseconds from the database server's clock
/// (`fleet_now_ms()`), so relays with skewed clocks still agree on expiry
/// and leases. The audit record itself is kept as `json` (not `jsonb`): json
/// keeps the exact text, so the hash can be recomputed from what is stored
/// (jsonb would rewrite numbers and refuses `\u0000` in strings, which a
/// technician's note may legally contain).
const V1: &str = r#"
CREATE FUNCTION fleet_now_ms() RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT (extract(epoch FROM now()) * 1000)::bigint $$;

CREATE TABLE relays (
    relay_id       text PRIMARY KEY,
    public_address text NOT NULL,
    public_key     text NOT NULL,
    lease_until_ms bigint NOT NULL,
    registered_ms  bigint NOT NULL
);

CREATE TABLE sessions (
    session_id     text PRIMARY KEY,
    relay_id       text NOT NULL REFERENCES relays,
    technician     text NOT NULL,
    technician_key text NOT NULL,
    device         text,
    phase          text NOT NULL,
    started_ms     bigint NOT NULL,
    updated_ms     bigint NOT NULL,
    ended_ms       bigint,
    end_reason     text
);
CREATE INDEX sessions_open ON sessions (relay_id) WHERE ended_ms IS NULL;

CREATE TABLE invites (
    invite_id    text PRIMARY KEY,
    code_digest  bytea NOT NULL UNIQUE CHECK (length(code_digest) = 32),
    technician   text NOT NULL,
    session_id   text NOT NULL,
    relay_id     text NOT NULL REFERENCES relays,
    created_ms   bigint NOT NULL,
    expires_ms   bigint NOT NULL,
    redeemed_ms  bigint,
    redeemed_by  text,
    withdrawn_ms bigint
);
CREATE INDEX invites_open_by_technician ON invites (technician)
    WHERE redeemed_ms IS NULL AND withdrawn_ms IS NULL;

CREATE TABLE code_failures (
    window_ms       bigint NOT NULL,
    window_start_ms bigint NOT NULL,
    failures        integer NOT NULL,
    PRIMARY KEY (window_ms, window_start_ms)
);

CREATE TABLE control (
    id        bigserial PRIMARY KEY,
    kind      text NOT NULL CHECK (kind IN ('kill', 'revoke')),
    target    text NOT NULL,
    issued_by text NOT NULL,
    at_ms     bigint NOT NULL
);

CREATE TABLE registry_state (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint NOT NULL
);
INSERT INTO registry_state (one, version) VALUES (true, 0);

CREATE TABLE technicians (
    key_hex    text PRIMARY KEY,
    document   jsonb NOT NULL,
    revoked    boolean NOT NULL,
    changed_ms bigint NOT NULL,
    version    bigint NOT NULL
);

-- Posting a command: under a lock, so ids become visible in id order and a
-- reader catching up "after id N" never skips a row committed late. A
-- revocation also marks the registry in the same transaction.
CREATE FUNCTION fleet_post_control(p_kind text, p_target text, p_by text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE new_id bigint;
DECLARE v bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(4707346055955582035);
    INSERT INTO control (kind, target, issued_by, at_ms)
        VALUES (p_kind, p_target, p_by, fleet_now_ms()) RETURNING id INTO new_id;
    IF p_kind = 'revoke' THEN
        UPDATE registry_state SET version = version + 1 RETURNING version INTO v;
        INSERT INTO technicians (key_hex, document, revoked, changed_ms, version)
            VALUES (p_target, 'null'::jsonb, true, fleet_now_ms(), v)
            ON CONFLICT (key_hex) DO UPDATE
            SET revoked = true, changed_ms = EXCLUDED.changed_ms, version = EXCLUDED.version;
    END IF;
    PERFORM pg_notify('assent_fleet_control', new_id::text);
    RETURN new_id;
END $$;

CREATE TABLE audit_events (
    relay_id    text NOT NULL,
    seq         bigint NOT NULL CHECK (seq > 0),
    time        text NOT NULL,
    event       text NOT NULL,
    prev        text NOT NULL,
    hash        text NOT NULL,
    record      json NOT NULL,
    received_ms bigint NOT NULL,
    PRIMARY KEY (relay_id, seq)
);
CREATE INDEX audit_events_by_time ON audit_events (time, relay_id, seq);

CREATE TABLE audit_checkpoints (
    relay_id  text NOT NULL,
    seq       bigint NOT NULL,
    hash      text NOT NULL,
    signature bytea NOT NULL CHECK (length(signature) = 64),
    at_ms     bigint NOT NULL,
    PRIMARY KEY (relay_id, seq)
);

-- Append-only: refuses UPDATE, DELETE and TRUNCATE for everyone, the owner
-- included. Only a superuser can get past it (session_replication_role or
-- disabling the trigger), which the signed checkpoints and verify_fleet catch.
CREATE FUNCTION fleet_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'AS010';
END $$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION fleet_refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION fleet_refuse_change();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION fleet_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION fleet_refuse_change();

-- Every record must extend its relay's stored chain: seq 1 links to 64
-- zeros, seq n to the stored hash of seq n-1 (no gaps). (The columns are
-- not compared with the record here: PostgreSQL's json operators fail on a
-- record holding \u0000; verify_fleet compares them.)
CREATE FUNCTION fleet_audit_link() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE stored text;
BEGIN
    IF NEW.seq = 1 THEN
        IF NEW.prev <> repeat('0', 64) THEN
            RAISE EXCEPTION 'relay % seq 1: prev must be 64 zeros', NEW.relay_id
                USING ERRCODE = 'AS002';
        END IF;
        RETURN NEW;
    END IF;
    SELECT hash INTO stored FROM audit_events
        WHERE relay_id = NEW.relay_id AND seq = NEW.seq - 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'relay % seq %: gap, seq % is not stored', NEW.relay_id, NEW.seq, NEW.seq - 1
            USING ERRCODE = 'AS001';
    END IF;
    IF stored <> NEW.prev THEN
        RAISE EXCEPTION 'relay % seq %: prev does not match the stored hash of seq %',
            NEW.relay_id, NEW.seq, NEW.seq - 1
            USING ERRCODE = 'AS002';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_events_link BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION fleet_audit_link();

-- Roles are global to the server; several databases (or concurrent first
-- runs) may race to create it, which is harmless.
DO $$ BEGIN
    CREATE ROLE assent_fleet_writer NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
GRANT SELECT ON schema_version TO assent_fleet_writer;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON relays, sessions, invites, code_failures, technicians TO assent_fleet_writer;
GRANT SELECT, UPDATE ON registry_state TO assent_fleet_writer;
GRANT SELECT, INSERT, DELETE ON control TO assent_fleet_writer;
GRANT USAGE ON SEQUENCE control_id_seq TO assent_fleet_writer;
GRANT SELECT, INSERT ON audit_events, audit_checkpoints TO assent_fleet_writer;
"#;

/// Brings the schema to [`LATEST_VERSION`] on `client`, in one transaction.
pub(crate) async fn run(
    client: &mut tokio_postgres::Client,
    redactor: &crate::error::Redactor,
) -> Result<MigrationReport, FleetError> {
    let pg = |e: tokio_postgres::Error| redactor.pg(&e);
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(pg)?;
    let row = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await
        .map_err(pg)?;
    let from: i32 = crate::col(&row, 0)?;
    if from > LATEST_VERSION {
        return Err(FleetError::SchemaTooNew {
            found: from,
            known: LATEST_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from.max(0) as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql).await.map_err(pg)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(pg)?;
        tracing::info!(version, "fleet schema migrated");
    }
    tx.commit().await.map_err(pg)?;
    Ok(MigrationReport {
        from,
        to: LATEST_VERSION,
    })
}
