//! Tests of how clients connect to the relay's endpoint.

use super::*;

/// A UDP port that takes the handshake and never answers: the client
/// gives up at its limit with an error that says what to check.
#[tokio::test]
async fn a_relay_that_never_answers_is_given_up_on_with_a_clear_error() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let relay = silent.local_addr().unwrap().to_string();
    let pki = pki::generate(&["127.0.0.1".into()], "CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pki.ca_cert_pem).unwrap();
    let started = std::time::Instant::now();
    let Err(e) = connect_within(&relay, &ca, Duration::from_millis(300)).await else {
        panic!("connected to a socket that never answers");
    };
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = e.to_string();
    assert!(text.contains("no answer within 0.3 s"), "{text}");
    assert!(text.contains(&format!("UDP port {}", silent.local_addr().unwrap().port())));
}

/// A handshake that never finishes (here: every datagram of the first
/// attempt's source port is dropped on the way) does not hold the
/// client for the whole limit: the second attempt, from a fresh port,
/// connects.
#[tokio::test]
async fn a_stalled_handshake_is_overtaken_by_a_second_attempt() {
    use std::collections::HashMap;
    use tokio::net::UdpSocket;
    let (relay, ca, _dir) = loopback_relay();
    let relay_addr = relay.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = relay.accept().await {
            tokio::spawn(async move {
                if let Ok(connecting) = incoming.accept() {
                    if let Ok(conn) = connecting.await {
                        conn.closed().await;
                    }
                }
            });
        }
    });
    // The proxy: the first source port it hears from is black-holed.
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let proxy = front.local_addr().unwrap().to_string();
    let proxy_front = front.clone();
    tokio::spawn(async move {
        let (mut stalled, mut backs) = (None, HashMap::<SocketAddr, Arc<UdpSocket>>::new());
        let mut buf = vec![0u8; 65536];
        while let Ok((n, client)) = proxy_front.recv_from(&mut buf).await {
            if *stalled.get_or_insert(client) == client {
                continue;
            }
            let back = match backs.get(&client) {
                Some(b) => b.clone(),
                None => {
                    let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                    b.connect(relay_addr).await.unwrap();
                    let (b2, f2) = (b.clone(), proxy_front.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 65536];
                        while let Ok(n) = b2.recv(&mut buf).await {
                            let _ = f2.send_to(&buf[..n], client).await;
                        }
                    });
                    backs.insert(client, b.clone());
                    b
                }
            };
            let _ = back.send(&buf[..n]).await;
        }
    });
    let started = std::time::Instant::now();
    let (_endpoint, conn) = connect_within(&proxy, &ca, Duration::from_secs(15))
        .await
        .expect("the second attempt connects");
    let took = started.elapsed();
    assert!(took >= SECOND_ATTEMPT_AFTER, "{took:?}");
    assert!(
        took < SECOND_ATTEMPT_AFTER + Duration::from_secs(3),
        "{took:?}"
    );
    conn.close(close::NORMAL, b"");
}

/// A relay endpoint on loopback with a fresh CA; the CA's path.
fn loopback_relay() -> (Endpoint, std::path::PathBuf, tempfile::TempDir) {
    let pki = pki::generate(&["127.0.0.1".into()], "CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key] = pki.write_into(dir.path()).unwrap();
    let relay = server_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        (&cert, &key),
        Duration::from_secs(10),
    )
    .unwrap();
    (relay, ca, dir)
}

/// The relay's side of a transfer: accepts one connection and reads its
/// stream to the end.
async fn read_one_stream(relay: Endpoint) {
    let conn = relay.accept().await.unwrap().await.unwrap();
    let (_send, mut recv) = conn.accept_bi().await.unwrap();
    while recv
        .read_chunk(usize::MAX, true)
        .await
        .is_ok_and(|c| c.is_some())
    {}
}

/// Path MTU discovery from a client to the relay's endpoint goes past
/// Ethernet's 1472 bytes on loopback (it stopped there while the relay
/// advertised quinn's default).
#[tokio::test]
async fn datagrams_to_the_relay_grow_past_ethernet_size_on_loopback() {
    let (relay, ca, _dir) = loopback_relay();
    let addr = relay.local_addr().unwrap().to_string();
    let server = tokio::spawn(read_one_stream(relay));
    let (_endpoint, conn) = connect(&addr, &ca).await.unwrap();
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while conn.stats().path.current_mtu <= 1472 && std::time::Instant::now() < deadline {
        send.write_all(&chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let to_relay = conn.stats().path.current_mtu;
    send.finish().unwrap();
    server.await.unwrap();
    assert!(
        to_relay > 1472,
        "client→relay path MTU stayed at {to_relay}"
    );
}

/// The relay's datagrams to a client (a viewer's screen) grow as large as
/// the ones it receives, and the client's receive offload takes them
/// whole: a read buffer too small for a coalesced batch would truncate it
/// and lose packets.
#[tokio::test]
async fn datagrams_to_a_client_grow_too_and_arrive_whole() {
    let (relay, ca, _dir) = loopback_relay();
    let addr = relay.local_addr().unwrap().to_string();
    const TOTAL: usize = 32 * 1024 * 1024;
    let server = tokio::spawn(async move {
        let conn = relay.accept().await.unwrap().await.unwrap();
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        let chunk = vec![7u8; 64 * 1024];
        for _ in 0..TOTAL / chunk.len() {
            send.write_all(&chunk).await.unwrap();
        }
        send.finish().unwrap();
        let _ = send.stopped().await;
        conn.stats().path
    });
    let (_endpoint, conn) = connect(&addr, &ca).await.unwrap();
    let (_send, mut recv) = conn.accept_bi().await.unwrap();
    let mut received = 0;
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await.unwrap() {
        received += chunk.bytes.len();
    }
    assert_eq!(received, TOTAL);
    let path = server.await.unwrap();
    assert!(path.current_mtu > 1472, "relay→client path MTU {path:?}");
    assert_eq!(path.black_holes_detected, 0, "{path:?}");
    assert!(path.lost_packets * 20 < path.sent_packets, "{path:?}");
}

/// Sending flat out once the path carries 8952-byte datagrams: batches of
/// them used to exceed the kernel's 64 kB limit and vanish (see
/// `socket`), and quinn took the loss for an MTU black hole and fell back
/// to 1200 bytes.
#[tokio::test]
async fn a_bulk_transfer_keeps_the_largest_datagrams() {
    let (relay, ca, _dir) = loopback_relay();
    let addr = relay.local_addr().unwrap().to_string();
    tokio::spawn(read_one_stream(relay));
    let (_endpoint, conn) = connect(&addr, &ca).await.unwrap();
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while conn.stats().path.current_mtu < MTU_UPPER_BOUND && std::time::Instant::now() < deadline {
        send.write_all(&chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(conn.stats().path.current_mtu, MTU_UPPER_BOUND);
    for _ in 0..512 {
        send.write_all(&chunk).await.unwrap();
    }
    let path = conn.stats().path;
    assert_eq!(path.black_holes_detected, 0, "{path:?}");
    assert_eq!(path.current_mtu, MTU_UPPER_BOUND, "{path:?}");
    assert!(path.lost_packets * 20 < path.sent_packets, "{path:?}");
}
