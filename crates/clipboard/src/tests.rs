//! Against a real X server (Xvfb) and a real other program (xclip): what
//! was copied before watching stays put, what is copied while watching is
//! handed on once, what the other side sends lands without an echo, and
//! text over the limit is reported by size only.

use std::time::Duration;

use super::*;

async fn next(clip: &mut SharedClipboard) -> Option<Copied> {
    tokio::time::timeout(Duration::from_secs(5), clip.copied())
        .await
        .ok()
        .flatten()
}

async fn nothing_for(clip: &mut SharedClipboard, wait: Duration) -> bool {
    tokio::time::timeout(wait, clip.copied()).await.is_err()
}

#[tokio::test]
async fn watches_changes_only_and_puts_without_echo() {
    let x = assent_xvfb::Xvfb::start_with_size(64, 64);
    // arboard reads DISPLAY from the environment; this is the crate's only
    // test that opens a clipboard, so no other test races on it.
    std::env::set_var("DISPLAY", x.display());
    x.set_clipboard("copied before sharing");
    let mut clip = SharedClipboard::open(64).expect("open the clipboard");
    clip.watch(true);
    assert!(
        nothing_for(&mut clip, POLL * 4).await,
        "what was copied before watching must not move"
    );

    x.set_clipboard("copied while sharing");
    assert_eq!(
        next(&mut clip).await,
        Some(Copied::Text("copied while sharing".into()))
    );
    assert!(nothing_for(&mut clip, POLL * 3).await, "handed on once");

    clip.put("from the other side".into());
    let landed = (0..40).find_map(|_| {
        std::thread::sleep(Duration::from_millis(50));
        x.clipboard().filter(|t| t == "from the other side")
    });
    assert!(
        landed.is_some(),
        "the other side's text is on the clipboard"
    );
    assert!(nothing_for(&mut clip, POLL * 3).await, "no echo");

    x.set_clipboard(&"y".repeat(65));
    assert_eq!(next(&mut clip).await, Some(Copied::TooLarge { bytes: 65 }));

    clip.watch(false);
    x.set_clipboard("copied after sharing stopped");
    assert!(nothing_for(&mut clip, POLL * 4).await, "not watching");
}
