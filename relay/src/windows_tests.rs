//! The budget on real QUIC connections: a client whose data the relay does
//! not read can send its share ahead and no more, and more once others
//! leave.

use std::time::Duration;

use assent_net::{Endpoint, SendStream};

use super::*;

struct Loopback {
    relay: Endpoint,
    ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn loopback() -> Loopback {
    let pki = assent_net::pki::generate(&["127.0.0.1".into()], "CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key] = pki.write_into(dir.path()).unwrap();
    let relay = assent_net::server_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        (&cert, &key),
        Duration::from_secs(10),
    )
    .unwrap();
    Loopback {
        relay,
        ca,
        _dir: dir,
    }
}

/// Writes until the stream stops taking data for a while; returns how much
/// it took in all.
async fn write_until_held(send: &mut SendStream, written: &mut usize) -> usize {
    let chunk = vec![0u8; 4096];
    while let Ok(Ok(())) =
        tokio::time::timeout(Duration::from_millis(300), send.write_all(&chunk)).await
    {
        *written += chunk.len();
    }
    *written
}

#[tokio::test]
async fn a_sender_gets_its_share_ahead_and_more_when_others_leave() {
    let net = loopback();
    let addr = net.relay.local_addr().unwrap().to_string();
    let windows = Arc::new(Windows::default());
    let (relay, w) = (net.relay.clone(), windows.clone());
    // The relay joins every connection and reads nothing from it.
    tokio::spawn(async move {
        while let Some(incoming) = relay.accept().await {
            let conn = incoming.await.unwrap();
            w.join(&conn);
            tokio::spawn(async move {
                let _streams = conn.accept_bi().await;
                conn.closed().await;
            });
        }
    });
    // 64 connections: a quarter of a megabyte each.
    let mut clients = Vec::new();
    for _ in 0..64 {
        clients.push(assent_net::connect(&addr, &net.ca).await.unwrap());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while windows.now().0 < 64 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(windows.now(), (64, 256 * 1024));
    // The last to join: the earlier ones were granted larger shares while
    // fewer shared the budget (credit granted is never taken back).
    let (_endpoint, conn) = clients.last().unwrap();
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let mut written = 0;
    let held_at = write_until_held(&mut send, &mut written).await;
    assert!(
        held_at <= 256 * 1024,
        "sent {held_at} bytes ahead of a 256 kB share"
    );
    assert!(held_at >= 128 * 1024, "held at {held_at} bytes");

    // The others leave: the share grows to the transport's own window, and
    // the held sender goes on (up to its stream's 512 kB).
    let leaving: Vec<_> = clients.drain(..63).collect();
    for (_, conn) in &leaving {
        conn.close(0u32.into(), b"");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while windows.now().0 > 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(windows.now(), (1, MAX_WINDOW));
    let after = write_until_held(&mut send, &mut written).await;
    assert!(after > 384 * 1024, "still held at {after} bytes");
}
