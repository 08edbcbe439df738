//! The sockets under the endpoints. A bulk transfer at the largest
//! datagram size is in `connect_tests`.

use super::*;

#[tokio::test]
async fn a_send_batch_of_the_largest_datagrams_fits_one_ip_datagram() {
    let runtime = quinn::default_runtime().unwrap();
    let socket = client("127.0.0.1:0".parse().unwrap(), &*runtime).unwrap();
    let segments = socket.max_transmit_segments();
    assert!(segments * usize::from(crate::MTU_UPPER_BOUND) <= MAX_GSO_BATCH);
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    if quinn::udp::UdpSocketState::new((&probe).into()).is_ok_and(|s| s.max_gso_segments() > 1) {
        // 65,507 / 8952: seven datagrams a batch where the kernel has GSO
        // (quinn would make ten, and the kernel refuse them).
        assert_eq!(segments, 7);
    }
}

#[tokio::test]
async fn a_read_takes_the_largest_coalesced_batch_and_no_more() {
    let runtime = quinn::default_runtime().unwrap();
    let socket = client("127.0.0.1:0".parse().unwrap(), &*runtime).unwrap();
    let segments = socket.max_receive_segments();
    // Eight 8952-byte buffers hold any 64 kB read the kernel coalesces,
    // whatever the datagrams' size; 64 would make 18 MB an endpoint.
    assert!(segments <= 8, "{segments}");
    if segments > 1 {
        assert!(segments * usize::from(crate::MTU_UPPER_BOUND) >= MAX_GSO_BATCH);
    }
}
