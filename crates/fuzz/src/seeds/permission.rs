//! Seeds for permissions beyond the scope (issue 14 item 2): what the
//! agent and viewer say of the clipboard, the text itself, and hostile
//! variants (a list past its bound, empty and oversized text).

use assent_proto::files::{FileMsg, FileOutcome, FileReport};
use assent_proto::permission::{ClipboardReport, Direction, Permission, PermissionReport};
use assent_proto::session_msg::{Control, SessionMsg};
use assent_proto::wire::ClientMsg;

pub(super) fn session_msgs() -> Vec<(&'static str, Vec<u8>)> {
    let enc = |m: SessionMsg| m.encode().expect("seed messages are small");
    let granted = enc(SessionMsg::Permissions(vec![Permission::Clipboard]));
    // The list's declared length far past its bound, with no items behind it.
    let mut long_list = granted.clone();
    if let Some(len) = long_list.get_mut(1) {
        *len = 0x7f;
    }
    vec![
        ("permissions", granted),
        ("permissions-long-list", long_list),
        (
            "clipboard-text",
            enc(SessionMsg::Clipboard("copied".into())),
        ),
        (
            "clipboard-empty",
            postcard::to_allocvec(&SessionMsg::Clipboard(String::new())).unwrap_or_default(),
        ),
        (
            "file-offer-hostile-name",
            enc(SessionMsg::File(FileMsg::Offer {
                id: 1,
                name: "../../.bashrc\u{202e}txt.exe".into(),
                size: u64::MAX,
            })),
        ),
        (
            "file-chunk",
            enc(SessionMsg::File(FileMsg::Chunk {
                id: 1,
                data: vec![7; 64],
            })),
        ),
        (
            "file-end",
            enc(SessionMsg::File(FileMsg::End {
                id: 1,
                sha256: [9; 32],
            })),
        ),
        (
            "permission-request",
            enc(SessionMsg::Control(Control::PermissionRequest(
                Permission::Clipboard,
            ))),
        ),
    ]
}

pub(super) fn client_msgs() -> Vec<(&'static str, Vec<u8>)> {
    let enc = |m: &ClientMsg| assent_proto::wire::encode(m).expect("seed messages are small");
    let changed = ClientMsg::PermissionChanged(PermissionReport {
        permission: Permission::Clipboard,
        allowed: true,
        change: 1,
        receipt: vec![7; 64],
    });
    let moved = ClientMsg::ClipboardTransfer(ClipboardReport {
        number: 1,
        direction: Direction::FromUser,
        bytes: 12,
        sha256: [3; 32],
        receipt: vec![7; 64],
    });
    let file = ClientMsg::FileTransfer(FileReport {
        number: 1,
        direction: Direction::ToUser,
        name: "report.pdf".into(),
        bytes: 10,
        sha256: [4; 32],
        outcome: FileOutcome::Completed,
        receipt: vec![7; 64],
    });
    vec![
        ("file-transfer", enc(&file)),
        ("permission-changed", enc(&changed)),
        ("clipboard-transfer", enc(&moved)),
    ]
}
