//! Join links: `assent://join?relay=HOST:PORT&code=123-456-789-012-345`,
//! what a technician sends instead of reading fifteen digits aloud. A link
//! carries no trust: the agent checks the relay against the CA it already
//! has, exactly as for a typed code. Parsing is strict (one scheme, one
//! path, the two parameters once each, no escapes), so a link cannot smuggle
//! anything else into the agent's command line.

use crate::invite::InviteCode;

/// Longest link accepted (a 253-character host name fits with room).
pub const MAX_LINK: usize = 512;

/// A parsed join link.
#[derive(Clone)]
pub struct JoinLink {
    /// `HOST:PORT` (a name, an IPv4 address, or `[IPv6]`).
    pub relay: String,
    pub code: InviteCode,
}

impl std::fmt::Debug for JoinLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The code stays redacted, as in `InviteCode`'s own Debug.
        f.debug_struct("JoinLink")
            .field("relay", &self.relay)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("not an assent://join link")]
    NotALink,
    #[error("the link is longer than {MAX_LINK} characters")]
    TooLong,
    #[error("the link's relay is not HOST:PORT")]
    BadRelay,
    #[error("the link's code is not a 15-digit invite code")]
    BadCode,
    #[error("the link has a parameter other than relay and code, or one twice")]
    BadParameter,
}

impl JoinLink {
    /// Whether `text` is meant as a link (it may still be malformed).
    pub fn looks_like_link(text: &str) -> bool {
        text.get(..9)
            .is_some_and(|s| s.eq_ignore_ascii_case("assent://"))
    }

    /// The link for a code the relay handed out, as the viewer prints it.
    pub fn url(relay: &str, code: &str) -> String {
        format!("assent://join?relay={relay}&code={code}")
    }

    /// What the technician pastes into mail, chat or a web page for the
    /// user (plain text, since many mail and chat programs and web pages
    /// do not follow `assent://` links): the link, what it does, and the
    /// manual way with the same code. It holds the code: for the user only.
    pub fn message(relay: &str, code: &str, minutes: u32) -> String {
        let url = JoinLink::url(relay, code);
        format!(
            "To let me help you on your computer, open this link:\n\
             {url}\n\
             It starts Assent, which first asks you: nothing is shared until you say yes, \
             and you can pause or end the session at any time.\n\
             If the link does not open (some mail and chat programs do not follow assent:// \
             links), open a terminal and run:\n\
             assent-agent join '{url}'\n\
             or type the code yourself:\n\
             assent-agent join --relay {relay} {code}\n\
             The code works once, for the next {minutes} minutes.\n"
        )
    }

    pub fn parse(text: &str) -> Result<JoinLink, LinkError> {
        if text.len() > MAX_LINK {
            return Err(LinkError::TooLong);
        }
        let rest = text
            .strip_prefix("assent://join?")
            .or_else(|| text.strip_prefix("assent://join/?"))
            .ok_or(LinkError::NotALink)?;
        let (mut relay, mut code) = (None, None);
        for pair in rest.split('&') {
            let slot = match pair.split_once('=') {
                Some(("relay", v)) => (&mut relay, v),
                Some(("code", v)) => (&mut code, v),
                _ => return Err(LinkError::BadParameter),
            };
            if slot.0.replace(slot.1).is_some() {
                return Err(LinkError::BadParameter);
            }
        }
        let relay = relay
            .filter(|r| valid_relay(r))
            .ok_or(LinkError::BadRelay)?;
        let code = code
            .filter(|c| c.chars().all(|ch| ch.is_ascii_digit() || ch == '-'))
            .and_then(InviteCode::parse)
            .ok_or(LinkError::BadCode)?;
        Ok(JoinLink {
            relay: relay.to_string(),
            code,
        })
    }
}

/// `HOST:PORT`: a DNS name or IPv4 address of letters, digits, `.` and `-`,
/// or an IPv6 address in brackets; a port from 1 to 65535.
fn valid_relay(relay: &str) -> bool {
    let Some((host, port)) = relay.rsplit_once(':') else {
        return false;
    };
    let port_ok = port.len() <= 5
        && port.chars().all(|c| c.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p != 0);
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.len() <= 253
                && !host.starts_with(['-', '.'])
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        }
    };
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: &str = "123-456-789-012-345";

    #[test]
    fn round_trips_what_the_viewer_prints() {
        for relay in ["relay.example.com:4433", "127.0.0.1:9", "[::1]:4433"] {
            let url = JoinLink::url(relay, CODE);
            let link = JoinLink::parse(&url).unwrap();
            assert_eq!(link.relay, relay);
            assert_eq!(link.code.grouped(), CODE);
            assert!(JoinLink::looks_like_link(&url));
        }
        let link = JoinLink::parse("assent://join?code=123456789012345&relay=r:1").unwrap();
        assert_eq!(link.code.grouped(), CODE);
        assert!(
            !format!("{link:?}").contains("123"),
            "Debug redacts the code"
        );
    }

    #[test]
    fn the_message_carries_the_link_and_the_manual_way() {
        let text = JoinLink::message("relay.example.com:4433", CODE, 10);
        let url = JoinLink::url("relay.example.com:4433", CODE);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], url);
        assert!(lines.contains(&format!("assent-agent join '{url}'").as_str()));
        let manual = format!("assent-agent join --relay relay.example.com:4433 {CODE}");
        assert!(lines.contains(&manual.as_str()), "{text}");
        assert!(text.contains("nothing is shared until you say yes"));
        assert!(text.contains("for the next 10 minutes"));
    }

    #[test]
    fn refuses_anything_else() {
        let cases = [
            (
                "https://join?relay=r:1&code=123456789012345",
                LinkError::NotALink,
            ),
            (
                "assent://other?relay=r:1&code=123456789012345",
                LinkError::NotALink,
            ),
            ("assent://join?relay=r:1", LinkError::BadCode),
            ("assent://join?relay=r:1&code=12345", LinkError::BadCode),
            (
                "assent://join?relay=r:1&code=123%20456789012345",
                LinkError::BadCode,
            ),
            (
                "assent://join?relay=r&code=123456789012345",
                LinkError::BadRelay,
            ),
            (
                "assent://join?relay=r:0&code=123456789012345",
                LinkError::BadRelay,
            ),
            (
                "assent://join?relay=r:99999&code=123456789012345",
                LinkError::BadRelay,
            ),
            (
                "assent://join?relay=a b:1&code=123456789012345",
                LinkError::BadRelay,
            ),
            (
                "assent://join?relay=-x:1&code=123456789012345",
                LinkError::BadRelay,
            ),
            (
                "assent://join?relay=[zz]:1&code=123456789012345",
                LinkError::BadRelay,
            ),
            (
                "assent://join?relay=r:1&relay=s:1&code=123456789012345",
                LinkError::BadParameter,
            ),
            (
                "assent://join?relay=r:1&code=123456789012345&ca=x",
                LinkError::BadParameter,
            ),
            (
                "assent://join?relay=r:1&code=123456789012345#x",
                LinkError::BadCode,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(JoinLink::parse(text).unwrap_err(), want, "{text}");
        }
        let long = format!("assent://join?relay={}:1&code=1", "a".repeat(600));
        assert_eq!(JoinLink::parse(&long).unwrap_err(), LinkError::TooLong);
    }
}
