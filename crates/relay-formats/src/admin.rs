//! The admin socket's protocol: the CLI writes one JSON request on one
//! line, the relay answers with one JSON line.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum AdminRequest {
    Sessions,
    Kill { session: String },
    TechnicianAdd { name: String, key: String },
    TechnicianRevoke { name: String },
    TechnicianEscalations { name: String, allowed: bool },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SessionInfo {
    pub id: String,
    pub technician: String,
    pub ticket: String,
    pub device: String,
    pub scope: String,
    /// RFC 3339 start time; empty while the request is pending.
    pub started: String,
    pub bytes_to_viewer: u64,
    pub bytes_to_agent: u64,
    /// `live`, `waiting for the user to join` or `asking the user`.
    #[serde(default)]
    pub state: String,
    /// Seconds since the request (invite) was created.
    #[serde(default)]
    pub age_secs: u64,
    /// Bytes a second each way over about the last second (live only).
    #[serde(default)]
    pub rate_to_viewer: u64,
    #[serde(default)]
    pub rate_to_agent: u64,
    /// Each side's round trip to the relay in milliseconds, once known.
    #[serde(default)]
    pub rtt_viewer_ms: Option<f64>,
    #[serde(default)]
    pub rtt_agent_ms: Option<f64>,
    /// Fleet mode: the relay that holds the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct AdminResponse {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<Vec<SessionInfo>>,
}

impl AdminResponse {
    /// Success with a line for the admin.
    pub fn ok(message: impl Into<String>) -> Self {
        AdminResponse {
            ok: true,
            message: Some(message.into()),
            ..Default::default()
        }
    }

    /// Failure with the reason for the admin (the CLI exits 1 with it).
    pub fn err(error: impl Into<String>) -> Self {
        AdminResponse {
            ok: false,
            error: Some(error.into()),
            ..Default::default()
        }
    }
}

/// Parses the request line the relay read from the socket.
pub fn parse_request(line: &str) -> Result<AdminRequest, serde_json::Error> {
    serde_json::from_str(line)
}

/// Parses the relay's answer line, as the CLI reads it.
pub fn parse_response(line: &str) -> Result<AdminResponse, serde_json::Error> {
    serde_json::from_str(line)
}

/// One request or answer as the line that goes on the socket.
pub fn to_line<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_round_trip_as_lines() {
        let req = AdminRequest::TechnicianAdd {
            name: "alice".into(),
            key: "ed25519:AAAA".into(),
        };
        let line = to_line(&req).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.starts_with(r#"{"cmd":"technician_add""#), "{text}");
        assert_eq!(parse_request(text).unwrap(), req);
        let resp = AdminResponse::err("no");
        let line = to_line(&resp).unwrap();
        assert_eq!(
            parse_response(std::str::from_utf8(&line).unwrap()).unwrap(),
            resp
        );
        assert!(parse_request(r#"{"cmd":"reboot"}"#).is_err());
    }
}
