//! The relay's formats, parsed without touching a file or a socket:
//!
//! - [`config`]: `relay.toml` (typed settings, errors naming the bad key,
//!   and the commented template `init` writes);
//! - [`technicians`]: `technicians.json`, the technician registry, and the
//!   checks an enrolment or revocation makes;
//! - [`admin`]: the admin socket's one-line JSON requests and answers;
//! - [`webhooks`]: the `[[webhooks]]` tables of `relay.toml`;
//! - [`fleet`]: the `[fleet]` table of `relay.toml`;
//! - [`outbox`]: the webhook outbox journal the relay keeps on disk.
//!
//! The relay reads and writes the files and the socket; everything it makes
//! of their bytes is here, so `assent-fuzz` fuzzes the same code without
//! depending on the relay (and on tokio, quinn and rustls with it).

#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod fleet;
pub mod outbox;
pub mod technicians;
pub mod webhooks;
