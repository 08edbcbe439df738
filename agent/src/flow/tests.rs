use super::*;

fn run(rtt: Duration, frames: u64) -> FlowWindow {
    let mut w = FlowWindow::default();
    let t0 = Instant::now();
    for seq in 1..=frames {
        let at = t0 + TARGET_FRAME_INTERVAL * seq as u32;
        w.on_sent(seq, 1000, at);
        w.on_ack(seq, at + rtt);
    }
    w
}

#[test]
fn loopback_keeps_the_minimum() {
    let w = run(Duration::from_millis(2), 50);
    assert_eq!(w.window(), MIN_WINDOW);
    assert_eq!(w.in_flight(), 0);
}

#[test]
fn a_long_round_trip_widens_the_window_to_keep_30_fps() {
    let w = run(Duration::from_millis(400), 100);
    // 400 ms at 33 ms a frame needs ~12 frames on the way, plus slack.
    assert_eq!(w.window(), 14);
    let w = run(Duration::from_secs(5), 100);
    assert_eq!(w.window(), MAX_WINDOW, "capped");
}

#[test]
fn the_window_closes_when_acks_stop() {
    let mut w = FlowWindow::default();
    let t0 = Instant::now();
    for seq in 1..=MIN_WINDOW {
        assert!(w.may_send());
        w.on_sent(seq, 100, t0);
    }
    assert!(!w.may_send());
    w.on_ack(1, t0 + Duration::from_millis(5));
    assert!(w.may_send());
}

#[test]
fn one_frame_may_always_go_however_large() {
    let mut w = FlowWindow::default();
    let t0 = Instant::now();
    assert!(w.may_send());
    // The codec's first frame is number 0 (a keyframe, often the largest).
    w.on_sent(0, 50 << 20, t0);
    assert!(!w.may_send(), "a 50 MB frame fills any budget");
    w.on_ack(0, t0 + Duration::from_millis(10));
    assert!(w.may_send(), "its acknowledgement opens the window again");
    assert_eq!(w.bytes_in_flight, 0);
}

#[test]
fn acks_for_frames_never_sent_do_not_open_the_window() {
    let mut w = FlowWindow::default();
    let t0 = Instant::now();
    for seq in 1..=3 {
        w.on_sent(seq, 100, t0);
    }
    w.on_ack(u64::MAX, t0);
    assert_eq!(w.in_flight(), 0);
    assert_eq!(w.bytes_in_flight, 0);
    w.on_sent(4, 100, t0);
    w.on_ack(1, t0); // stale: ignored
    assert_eq!(w.in_flight(), 1);
    // A flood of sends without acks keeps the bookkeeping bounded.
    for seq in 5..10_000 {
        w.on_sent(seq, 100, t0);
    }
    assert!(w.sent.len() as u64 <= MAX_WINDOW);
    assert_eq!(w.bytes_in_flight, 100 * MAX_WINDOW);
    assert!(!w.may_send());
}

/// A link with one bottleneck queue, in 1 ms steps: what the agent sees.
struct Link {
    /// Bottleneck rate, bytes per ms (1000 = 8 Mbit/s).
    rate: f64,
    one_way: Duration,
    /// When the bottleneck has sent everything queued.
    free_at: Instant,
    /// (ack arrives at the agent, seq)
    acks: VecDeque<(Instant, u64)>,
}

/// What happened over a stretch of a simulated run.
#[derive(Debug, Default)]
struct Stretch {
    frames: u64,
    bytes: u64,
    queue_delays: Vec<Duration>,
}

impl Stretch {
    fn p95_queue(&mut self) -> Duration {
        self.queue_delays.sort();
        self.queue_delays[self.queue_delays.len() * 95 / 100]
    }
}

impl Link {
    fn new(rate: f64, rtt: Duration, t0: Instant) -> Link {
        Link {
            rate,
            one_way: rtt / 2,
            free_at: t0,
            acks: VecDeque::new(),
        }
    }

    /// Runs for `ms` milliseconds with a screen that offers a frame of
    /// `frame` bytes every 16 ms (a moving photo), and `may_send` deciding.
    fn run(
        &mut self,
        w: &mut FlowWindow,
        (now, seq): (&mut Instant, &mut u64),
        ms: u64,
        frame: u64,
        may_send: impl Fn(&FlowWindow) -> bool,
    ) -> Stretch {
        let mut out = Stretch::default();
        let mut next_capture = *now;
        for _ in 0..ms {
            while self.acks.front().is_some_and(|(at, _)| at <= now) {
                let (at, s) = self.acks.pop_front().unwrap();
                w.on_ack(s, at);
            }
            if *now >= next_capture && may_send(w) {
                *seq += 1;
                w.on_sent(*seq, frame as usize, *now);
                let start = self.free_at.max(*now);
                out.queue_delays.push(start - *now);
                self.free_at = start + Duration::from_secs_f64(frame as f64 / self.rate / 1000.0);
                self.acks.push_back((self.free_at + self.one_way * 2, *seq));
                out.frames += 1;
                out.bytes += frame;
                next_capture = *now + Duration::from_millis(16);
            }
            *now += Duration::from_millis(1);
        }
        out
    }
}

const MBIT: f64 = 125.0; // bytes per ms

#[test]
fn on_a_slow_uplink_the_queue_stays_near_the_target_and_the_link_stays_busy() {
    let t0 = Instant::now();
    let (mut now, mut seq) = (t0, 0);
    let mut link = Link::new(8.0 * MBIT, Duration::from_millis(40), t0);
    let mut w = FlowWindow::default();
    // A moving photo: 57 KB frames, wanting 3.5 MB/s of an 1 MB/s link.
    let frame = 57_000;
    link.run(
        &mut w,
        (&mut now, &mut seq),
        5_000,
        frame,
        FlowWindow::may_send,
    );
    let mut settled = link.run(
        &mut w,
        (&mut now, &mut seq),
        20_000,
        frame,
        FlowWindow::may_send,
    );
    let p95 = settled.p95_queue();
    let used = settled.bytes as f64 / 20_000.0 / (8.0 * MBIT);
    eprintln!(
        "p95 queue {p95:?}, link used {used:.2}, budget {}",
        w.budget()
    );
    // The bound: the link never queues more than ~100 ms.
    assert!(p95 <= Duration::from_millis(100), "p95 queue {p95:?}");
    assert!(used >= 0.6, "the link idles: {used:.2} of it used");

    // The same link with the frame window alone (before the budget): the
    // queue grows to a whole window of frames. What the test tells apart.
    let (mut now, mut seq) = (now, seq);
    let mut link = Link::new(8.0 * MBIT, Duration::from_millis(40), now);
    let mut w = FlowWindow::default();
    let frames_only = |w: &FlowWindow| {
        let rtt = w.srtt().unwrap_or_default();
        let window = (rtt.as_micros() / TARGET_FRAME_INTERVAL.as_micros() + 2) as u64;
        w.in_flight() < window.clamp(MIN_WINDOW, MAX_WINDOW)
    };
    link.run(&mut w, (&mut now, &mut seq), 5_000, frame, frames_only);
    let mut old = link.run(&mut w, (&mut now, &mut seq), 5_000, frame, frames_only);
    let old_p95 = old.p95_queue();
    eprintln!("frame window alone: p95 queue {old_p95:?}");
    assert!(old_p95 >= Duration::from_millis(300), "{old_p95:?}");
}

#[test]
fn the_frame_rate_drops_with_the_link_and_comes_back_with_it() {
    let t0 = Instant::now();
    let (mut now, mut seq) = (t0, 0);
    let mut link = Link::new(20.0 * MBIT, Duration::from_millis(40), t0);
    let mut w = FlowWindow::default();
    let frame = 30_000;
    link.run(
        &mut w,
        (&mut now, &mut seq),
        5_000,
        frame,
        FlowWindow::may_send,
    );
    let fast = link.run(
        &mut w,
        (&mut now, &mut seq),
        5_000,
        frame,
        FlowWindow::may_send,
    );
    link.rate = 2.0 * MBIT;
    link.run(
        &mut w,
        (&mut now, &mut seq),
        3_000,
        frame,
        FlowWindow::may_send,
    );
    let mut slow = link.run(
        &mut w,
        (&mut now, &mut seq),
        5_000,
        frame,
        FlowWindow::may_send,
    );
    link.rate = 20.0 * MBIT;
    link.run(
        &mut w,
        (&mut now, &mut seq),
        3_000,
        frame,
        FlowWindow::may_send,
    );
    let back = link.run(
        &mut w,
        (&mut now, &mut seq),
        5_000,
        frame,
        FlowWindow::may_send,
    );
    let fps = |s: &Stretch| s.frames as f64 / 5.0;
    eprintln!(
        "fps fast {:.1}, slow {:.1}, back {:.1}; slow p95 queue {:?}",
        fps(&fast),
        fps(&slow),
        fps(&back),
        slow.p95_queue()
    );
    assert!(fps(&fast) >= 40.0, "20 Mbit/s carries 83 of these a second");
    assert!(fps(&slow) <= 9.0, "2 Mbit/s carries 8 a second");
    assert!(fps(&slow) >= 5.0, "and the link is used");
    assert!(slow.p95_queue() <= TARGET_QUEUE + Duration::from_millis(130));
    assert!(fps(&back) >= fps(&fast) * 0.8, "the rate comes back");
}

#[test]
fn a_quiet_screen_does_not_inflate_the_budget() {
    let t0 = Instant::now();
    let (mut now, mut seq) = (t0, 0);
    let mut link = Link::new(100.0 * MBIT, Duration::from_millis(10), t0);
    let mut w = FlowWindow::default();
    // Typing: 100-byte frames on a fast link for a minute.
    link.run(
        &mut w,
        (&mut now, &mut seq),
        60_000,
        100,
        FlowWindow::may_send,
    );
    assert!(
        w.budget() <= INITIAL_BUDGET as u64,
        "the budget grew without use: {}",
        w.budget()
    );
}
