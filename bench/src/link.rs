//! Group 9: the session on the links remote support runs on (issue 15
//! item 4). The real agent reaches the relay through a shaped uplink
//! (`assent_tests::shaped`: a rate limit, a drop-tail queue that holds
//! 500 ms as home routers do, a fixed delay each way); the viewer presses
//! keys in the flip window and times the decoded change (input → photon),
//! on a still desktop, with a page scrolling and with a photo moving behind
//! the flip window, and counts the frames it decodes.

use std::time::{Duration, Instant};

use assent_proto::wire::Scope;
use assent_tests::shaped::{Shape, ShapedLink};

use crate::desktop::{Desktop, Workload};
use crate::relay::BenchRelay;
use crate::report::{Better, Figure, Target};
use crate::session;

/// (label, bits per second, round trip)
const LINKS: [(&str, u64, u64); 2] = [
    ("8 Mbit/s 40 ms", 8_000_000, 40),
    ("2 Mbit/s 80 ms", 2_000_000, 80),
];

pub async fn run(presses: usize) -> anyhow::Result<Vec<Figure>> {
    let tmp = tempfile::tempdir()?;
    let relay = BenchRelay::start(tmp.path()).await?;
    let mut figures = Vec::new();
    for (i, (label, rate_bps, rtt_ms)) in LINKS.into_iter().enumerate() {
        let shape = Shape {
            rate_bps,
            one_way: Duration::from_millis(rtt_ms / 2),
            queue_limit: Duration::from_millis(500),
        };
        for screen in [Behind::Nothing, Behind::Scrolling, Behind::Photo] {
            let config = tmp.path().join(format!("agent-{i}-{}", screen.name()));
            let run = one(&relay, shape, screen, &config, presses).await?;
            figures.extend(run.figures(label, screen, i == 0));
        }
    }
    Ok(figures)
}

/// What moves behind the flip window while the keys are pressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behind {
    /// A still desktop: the issue's "typing".
    Nothing,
    /// The office page scrolling.
    Scrolling,
    /// The photo-like 640x400 window moving at 20 moves a second.
    Photo,
}

impl Behind {
    fn name(self) -> &'static str {
        match self {
            Behind::Nothing => "typing",
            Behind::Scrolling => "scrolling",
            Behind::Photo => "moving photo",
        }
    }
}

struct Run {
    photon_ms: Vec<f64>,
    /// Key presses not seen at the viewer within 2 s.
    missed: usize,
    fps: f64,
    p95_queue_ms: f64,
}

async fn one(
    relay: &BenchRelay,
    shape: Shape,
    behind: Behind,
    config: &std::path::Path,
    presses: usize,
) -> anyhow::Result<Run> {
    let mut desktop = Desktop::start(Workload::Static)?;
    // Behind the flip window, which is made after it.
    match behind {
        Behind::Nothing => {}
        Behind::Scrolling => desktop.start_phase(2)?,
        Behind::Photo => desktop.start_photo(20)?,
    }
    desktop.flip_window()?;
    let link = ShapedLink::start(relay.addr.parse()?, shape).await;
    let addr = link.addr.to_string();
    let (mut live, agent, _) =
        session::live_session_via(relay, &addr, &desktop, config, Scope::Control).await?;
    live.next_frame(Duration::from_secs(10)).await?;
    live.drain(Duration::from_secs(2)).await?;
    let (from, frames) = (tokio::time::Instant::now(), live.frames);
    let started = Instant::now();
    let (photon_ms, missed) = session::key_flips(&mut live, presses).await?;
    let fps = (live.frames - frames) as f64 / started.elapsed().as_secs_f64();
    let queue = link
        .p95_wait(from, tokio::time::Instant::now())
        .unwrap_or_default();
    drop(live);
    drop(agent);
    desktop.stop_driver();
    Ok(Run {
        photon_ms,
        missed,
        fps,
        p95_queue_ms: queue.as_secs_f64() * 1000.0,
    })
}

impl Run {
    fn figures(&self, link: &str, behind: Behind, the_issues_link: bool) -> Vec<Figure> {
        let screen = behind.name();
        let photo = behind == Behind::Photo;
        let name = |what: &str| format!("{link}, {screen}: {what}");
        let mut photon = Figure::from_samples(
            "link",
            name("input → photon"),
            "ms",
            Better::Lower,
            &self.photon_ms,
        );
        let mut fps = Figure::single(
            "link",
            name("frames/s at the viewer"),
            "/s",
            Better::Higher,
            Some(self.fps),
        );
        // The issue's targets are for the 8 Mbit/s link.
        // (None for scrolling: the issue measures it without a target.)
        if the_issues_link && behind != Behind::Scrolling {
            photon = photon.target(Target::p95(if photo { 250.0 } else { 150.0 }));
            if photo {
                fps = fps.target(Target::median(15.0));
            }
        }
        let queue = Figure::single(
            "link",
            name("p95 wait in the link's queue"),
            "ms",
            Better::Lower,
            Some(self.p95_queue_ms),
        );
        let missed = Figure::single(
            "link",
            name("key presses not seen within 2 s"),
            "count",
            Better::Lower,
            Some(self.missed as f64),
        );
        vec![photon, fps, queue, missed]
    }
}
