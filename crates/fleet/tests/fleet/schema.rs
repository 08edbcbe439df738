//! Migrations, the writer role, password redaction, database down/up.

use std::time::{Duration, Instant};

use assent_fleet::testing::PgServer;
use assent_fleet::{Fleet, FleetConfig, FleetError};

use crate::common::{config, migrated, relay};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_twice_is_a_no_op_and_concurrent_runs_are_safe() {
    let pg = PgServer::start().expect("private PostgreSQL");
    let url = pg.create_database("fleet").expect("createdb");
    let cfg = config(&url, "a");
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let cfg = cfg.clone();
            tokio::spawn(async move { assent_fleet::migrate(&cfg).await })
        })
        .collect();
    let mut reports = Vec::new();
    for r in runs {
        reports.push(r.await.expect("join").expect("migrate"));
    }
    let latest = assent_fleet::LATEST_VERSION;
    assert_eq!(
        reports.iter().filter(|r| r.from == 0).count(),
        1,
        "{reports:?}"
    );
    assert!(reports.iter().all(|r| r.to == latest));
    let again = assent_fleet::migrate(&cfg).await.expect("migrate again");
    assert_eq!((again.from, again.to), (latest, latest));
    let fleet = Fleet::connect(cfg).await.expect("connect");
    assert_eq!(fleet.schema_version().await.expect("version"), latest);
    assert_eq!(
        pg.psql("fleet", "SELECT count(*) FROM schema_version")
            .unwrap(),
        "1"
    );
}

#[tokio::test]
async fn the_writer_role_cannot_change_the_audit_and_neither_can_the_owner() {
    let (pg, url) = migrated().await;
    let a = relay(&url, "a").await;
    a.ship(&crate::common::records(2)).await.expect("ship");
    pg.psql(
        "fleet",
        "CREATE ROLE relay_a LOGIN; GRANT assent_fleet_writer TO relay_a",
    )
    .unwrap();
    let writer = Fleet::connect(config(&pg.url_as("fleet", "relay_a"), "a"))
        .await
        .expect("connect as writer");
    // The writer can do its job...
    writer
        .renew_lease(Duration::from_secs(5))
        .await
        .expect("lease");
    assert_eq!(writer.acked_seq().await.expect("acked"), 2);
    // ...but not rewrite history, by privilege...
    let sql = "UPDATE audit_events SET event = 'x'";
    let as_writer = pg
        .psql("fleet", &format!("SET ROLE relay_a; {sql}"))
        .unwrap_err();
    assert!(
        as_writer.to_string().contains("permission denied"),
        "{as_writer}"
    );
    // ...and the superuser/owner is stopped by the triggers.
    for sql in [
        "UPDATE audit_events SET event = 'x' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 2",
        "TRUNCATE audit_events",
        "TRUNCATE audit_checkpoints",
    ] {
        let e = pg.psql("fleet", sql).unwrap_err().to_string();
        assert!(e.contains("append-only"), "{sql}: {e}");
    }
    assert_eq!(
        pg.psql("fleet", "SELECT count(*) FROM audit_events")
            .unwrap(),
        "2"
    );
}

#[tokio::test]
async fn errors_never_show_the_password() {
    let secret = "Sup3rS3cret-pw";
    // Nothing listens on port 1: a connect error.
    let urls = [
        format!("postgres://relay:{secret}@127.0.0.1:1/fleet?sslmode=disable&connect_timeout=2"),
        format!("host=127.0.0.1 port=1 user=relay password={secret} sslmode=disable"),
        format!("postgres://relay:{secret}@127.0.0.1:notaport/fleet"),
        format!("postgres://relay:{secret}@127.0.0.1:1/fleet"),
    ];
    for url in urls {
        let cfg = config(&url, "a");
        assert!(!format!("{cfg:?}").contains(secret));
        let e = Fleet::connect(cfg.clone()).await.expect_err("must fail");
        let shown = format!("{e} / {e:?}");
        assert!(!shown.contains(secret), "{shown}");
        let e = assent_fleet::migrate(&cfg).await.expect_err("must fail");
        assert!(!format!("{e} / {e:?}").contains(secret));
    }
    // Without a CA file, TLS (sslmode prefer by default) is refused clearly.
    let e = Fleet::connect(config(&format!("postgres://r:{secret}@db/x"), "a"))
        .await
        .expect_err("tls without ca");
    assert!(
        matches!(e, FleetError::Config(ref m) if m.contains("CA file")),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_fails_calls_quickly_and_they_work_after_restart() {
    let (mut pg, url) = migrated().await;
    let a = relay(&url, "a").await;
    a.renew_lease(Duration::from_secs(30)).await.expect("lease");
    tokio::task::block_in_place(|| pg.stop());
    let started = Instant::now();
    let e = a
        .renew_lease(Duration::from_secs(30))
        .await
        .expect_err("db is down");
    assert!(matches!(e, FleetError::Unavailable(_)), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let e = Fleet::connect(config(&url, "b"))
        .await
        .expect_err("db is down");
    assert!(matches!(e, FleetError::Unavailable(_)), "{e:?}");
    tokio::task::block_in_place(|| pg.start_again()).expect("restart");
    a.renew_lease(Duration::from_secs(30))
        .await
        .expect("works again");
    assert!(!a.is_revoked("k").await.expect("works again"));
}

#[tokio::test]
async fn tls_verifies_the_server_against_the_ca_file() {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

    let files = tempfile::tempdir().unwrap();
    let (crt, key) = (
        files.path().join("server.crt"),
        files.path().join("server.key"),
    );
    std::fs::write(&crt, server_cert.pem()).unwrap();
    std::fs::write(&key, server_key.serialize_pem()).unwrap();
    let ca_file = files.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let other_ca = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
    let wrong_ca = files.path().join("wrong.pem");
    std::fs::write(&wrong_ca, other_ca.cert.pem()).unwrap();

    // The server wants its files owned by itself, mode 0600.
    let mut pg = PgServer::start_with(assent_fleet::testing::PgOptions {
        tcp: true,
        ..Default::default()
    })
    .expect("server");
    let (pcrt, pkey) = (
        pg.private_dir().join("server.crt"),
        pg.private_dir().join("server.key"),
    );
    std::fs::copy(&crt, &pcrt).unwrap();
    std::fs::copy(&key, &pkey).unwrap();
    pg.give_to_postgres(&pcrt, 0o600).unwrap();
    pg.give_to_postgres(&pkey, 0o600).unwrap();
    pg.stop();
    pg.set_options(assent_fleet::testing::PgOptions {
        tcp: true,
        settings: vec![
            ("ssl".into(), "on".into()),
            ("ssl_cert_file".into(), pcrt.display().to_string()),
            ("ssl_key_file".into(), pkey.display().to_string()),
        ],
    });
    pg.start_again().expect("restart with TLS");
    pg.create_database("fleet").unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/fleet", pg.port());
    let tls = |ca: &std::path::Path| FleetConfig {
        ca_file: Some(ca.to_path_buf()),
        ..config(&url, "a")
    };
    let fleet = Fleet::connect(tls(&ca_file)).await.expect("TLS connect");
    fleet.migrate().await.expect("migrate over TLS");
    let ssl = pg
        .psql("fleet", "SELECT count(*) FROM pg_stat_ssl WHERE ssl")
        .unwrap();
    assert_ne!(ssl, "0");
    let e = Fleet::connect(tls(&wrong_ca)).await.expect_err("wrong CA");
    assert!(matches!(e, FleetError::Unavailable(_)), "{e:?}");
}
