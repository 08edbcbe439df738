//! End-to-end tests: the real relay binary over real QUIC on loopback, with
//! programmatic agents and viewers (`assent-client`, no screen or window).

#![forbid(unsafe_code)]

mod agent;
mod agent_window;
mod audit_first;
mod blips;
mod chat;
mod clipboard;
mod common;
mod confirmation;
mod desktop;
mod escalation;
mod files;
mod fleet;
mod footprint;
mod geometry;
mod link;
mod logs;
mod metrics;
mod own_window;
mod pending;
mod people;
mod privacy;
mod privacy_window;
mod prompt;
mod reconnect;
mod recording;
mod refine;
mod relay;
mod reload;
mod security;
mod uplink;
mod validation;
mod viewer;
mod webhook;
mod window;
