//! Fuzz targets for every Assent decoder: one function per parser of bytes
//! that come from the network or from disk, each feeding its input to the
//! real decoder and asserting invariants, so any panic or violated
//! invariant is a finding:
//!
//! - no panic, whatever the bytes;
//! - bounded memory: with [`alloc::Counting`] installed as the global
//!   allocator, no input makes the decoder hold more than a budget derived
//!   from the input's length (or, for screen updates, from the declared
//!   screen size), so a 1 GiB length prefix or a zstd bomb costs nothing;
//! - where a decode succeeds, re-encoding round-trips, and the decoder
//!   agrees with an independent model of the format (framing, the channel's
//!   record layer).
//!
//! Two drivers call the same functions:
//!
//! - `cargo test -p assent-fuzz` (stable; part of `scripts/test` and CI)
//!   replays the committed corpus (`corpus/<target>/`) and then mutates it
//!   for `ASSENT_FUZZ_SECS` seconds per target (default 8), printing the
//!   executions per target. `ASSENT_FUZZ_SEED` changes the mutation seed
//!   (a number, or `random`).
//! - `fuzz/` at the repository root holds libFuzzer targets for long,
//!   coverage-guided runs on nightly (see `fuzz/README.md`).
//!
//! A new finding becomes a regression test by saving its input as
//! `corpus/<target>/regress-<what>`: every run replays the corpus first.

pub mod alloc;
pub mod mutate;
pub mod seeds;

mod audit;
mod channel;
mod codec;
mod proto;
mod relay;

pub use audit::audit_verify;
pub use channel::{channel_handshake, channel_record};
pub use codec::{codec_frame, recording, split_updates};
pub use proto::{
    framing, identity_text, session_msg, session_offer, wire_client_msg, wire_relay_msg,
};
pub use relay::{admin_request, relay_config, relay_technicians, webhook_outbox};

/// What a target made of one input, as a small hash ("ok", which error):
/// the stable driver keeps mutants that produce an outcome it has not seen,
/// a cheap stand-in for coverage feedback.
pub type Outcome = u64;

/// One fuzz target.
#[derive(Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]) -> Outcome,
    /// Longest input the mutator produces for it.
    pub max_len: usize,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Every target, by the name its corpus directory and libFuzzer binary use.
pub const TARGETS: &[Target] = &[
    Target {
        name: "framing",
        run: framing,
        max_len: 160 * 1024,
    },
    Target {
        name: "wire_client_msg",
        run: wire_client_msg,
        max_len: 8 * 1024,
    },
    Target {
        name: "wire_relay_msg",
        run: wire_relay_msg,
        max_len: 8 * 1024,
    },
    Target {
        name: "session_offer",
        run: session_offer,
        max_len: 8 * 1024,
    },
    Target {
        name: "session_msg",
        run: session_msg,
        max_len: 16 * 1024,
    },
    Target {
        name: "identity_text",
        run: identity_text,
        max_len: 8 * 1024,
    },
    Target {
        name: "codec_frame",
        run: codec_frame,
        max_len: 64 * 1024,
    },
    Target {
        name: "recording",
        run: recording,
        max_len: 64 * 1024,
    },
    Target {
        name: "channel_handshake",
        run: channel_handshake,
        max_len: 8 * 1024,
    },
    Target {
        name: "channel_record",
        run: channel_record,
        max_len: 16 * 1024,
    },
    Target {
        name: "audit_verify",
        run: audit_verify,
        max_len: 32 * 1024,
    },
    Target {
        name: "relay_config",
        run: relay_config,
        max_len: 8 * 1024,
    },
    Target {
        name: "relay_technicians",
        run: relay_technicians,
        max_len: 16 * 1024,
    },
    Target {
        name: "admin_request",
        run: admin_request,
        max_len: 8 * 1024,
    },
    Target {
        name: "webhook_outbox",
        run: webhook_outbox,
        max_len: 16 * 1024,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Memory a decoder may use for `len` bytes of input when its output is
/// built from the input: serde's containers preallocate at most what the
/// remaining input could hold, and a `serde_json::Value` is a few dozen bytes
/// per input byte at worst (`[0,0,...]`). Anything proportional to a length
/// *claimed* by the input, rather than to its real length, breaks this.
pub(crate) fn linear_budget(len: usize) -> usize {
    64 * len + 64 * 1024
}

/// The outcome label for `text`, with digits and quoted input dropped so
/// that "frame of 70000 bytes" and "frame of 70001 bytes" count as one.
pub(crate) fn outcome(text: &str) -> Outcome {
    // FNV-1a.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    // Up to the first quote: parsers quote the input in their messages.
    let kind = text.split(['`', '"']).next().unwrap_or_default();
    for b in kind.bytes().filter(|b| !b.is_ascii_digit()).take(80) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The outcome of a `Result`: "ok", or the error's message.
pub(crate) fn outcome_of<T, E: std::fmt::Display>(r: &Result<T, E>) -> Outcome {
    match r {
        Ok(_) => outcome("ok"),
        Err(e) => outcome(&e.to_string()),
    }
}
