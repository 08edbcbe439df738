//! Fleet storage against a real, private PostgreSQL per test (see
//! `assent_fleet::testing`). One test binary, several modules, to keep link
//! time down.

mod audit;
mod common;
mod control;
mod directory;
mod invites;
mod schema;
