//! Format 3's view: where frames sit on the agent's screen, carried by
//! keyframes, followed through monitor picks and resolution changes.

use assent_codec::{Decoder, Encoder, FrameRef, Rect, View};

fn screen(width: u32, height: u32, seed: u8) -> Vec<u8> {
    (0..width * height)
        .flat_map(|i| [(i as u8).wrapping_add(seed), (i / 7) as u8, seed, 0])
        .collect()
}

fn encode(e: &mut Encoder, data: &[u8], width: u32, height: u32) -> Option<Vec<u8>> {
    let frame = FrameRef::new(data, width, height, width as usize * 4).unwrap();
    e.encode(frame, false).unwrap().map(|f| f.bytes)
}

fn monitor(x: u32) -> Rect {
    Rect {
        x,
        y: 0,
        width: 64,
        height: 48,
    }
}

#[test]
fn keyframes_carry_the_view_and_a_change_of_it_is_a_keyframe() {
    let mut view = View {
        screen_width: 128,
        screen_height: 48,
        x: 0,
        y: 0,
        monitors: vec![monitor(0), monitor(64)],
    };
    let (mut e, mut d) = (Encoder::new(), Decoder::new());
    e.set_view(Some(view.clone()));
    let whole = screen(128, 48, 1);
    let key = encode(&mut e, &whole, 128, 48).unwrap();
    let u = d.decode(&key).unwrap();
    assert!(u.keyframe);
    assert_eq!(d.view(), Some(&view));
    // Nothing changed, the same view: nothing to send.
    e.set_view(Some(view.clone()));
    assert!(encode(&mut e, &whole, 128, 48).is_none());
    // The right monitor only: a keyframe of its size, with the view.
    view.x = 64;
    e.set_view(Some(view.clone()));
    let right = screen(64, 48, 2);
    let u = d.decode(&encode(&mut e, &right, 64, 48).unwrap()).unwrap();
    assert!(u.keyframe);
    assert_eq!((d.width(), d.height(), d.view()), (64, 48, Some(&view)));
    // Same size, the other monitor: still a keyframe, the view says where.
    view.x = 0;
    e.set_view(Some(view.clone()));
    let left = screen(64, 48, 3);
    let u = d.decode(&encode(&mut e, &left, 64, 48).unwrap()).unwrap();
    assert!(u.keyframe);
    assert_eq!(d.view().map(|v| v.x), Some(0));
    // A delta keeps the view.
    let mut edited = left.clone();
    edited[0] ^= 0xff;
    let u = d.decode(&encode(&mut e, &edited, 64, 48).unwrap()).unwrap();
    assert!(!u.keyframe);
    assert_eq!(d.view(), Some(&view));
}

#[test]
fn a_view_that_does_not_fit_the_frame_waits_for_one_that_does() {
    // The capture changed size before the view was updated: the keyframe
    // of the new size goes without a view, and the next one carries it.
    let small = View {
        screen_width: 64,
        screen_height: 48,
        x: 0,
        y: 0,
        monitors: vec![],
    };
    let (mut e, mut d) = (Encoder::new(), Decoder::new());
    e.set_view(Some(small.clone()));
    d.decode(&encode(&mut e, &screen(64, 48, 1), 64, 48).unwrap())
        .unwrap();
    assert_eq!(d.view(), Some(&small));
    let big = screen(96, 48, 1);
    let u = d.decode(&encode(&mut e, &big, 96, 48).unwrap()).unwrap();
    assert!(
        u.keyframe && d.view().is_none(),
        "no view that does not fit"
    );
    let grown = View {
        screen_width: 96,
        ..small
    };
    e.set_view(Some(grown.clone()));
    let u = d.decode(&encode(&mut e, &big, 96, 48).unwrap()).unwrap();
    assert!(u.keyframe, "the new view comes with a keyframe");
    assert_eq!(d.view(), Some(&grown));
}

#[test]
fn a_hostile_view_is_refused_and_leaves_the_screen_and_view_alone() {
    let view = View {
        screen_width: 64,
        screen_height: 48,
        x: 0,
        y: 0,
        monitors: vec![monitor(0)],
    };
    let (mut e, mut d) = (Encoder::new(), Decoder::new());
    e.set_view(Some(view.clone()));
    d.decode(&encode(&mut e, &screen(64, 48, 1), 64, 48).unwrap())
        .unwrap();
    let pixels = d.pixels().to_vec();
    // Another agent's keyframe whose monitor reaches past its screen.
    let mut other = Encoder::new();
    other.set_view(Some(View {
        monitors: vec![monitor(10)],
        ..view.clone()
    }));
    let bad = encode(&mut other, &screen(64, 48, 9), 64, 48).unwrap();
    assert_eq!(
        bad[1] & 2,
        0,
        "the encoder never sends a view that does not check"
    );
    let mut forged = bad.clone();
    forged[1] |= 2;
    // screen 64x48 at (0, 0), one monitor at x 10, 64 wide.
    let mut view_bytes = vec![64, 48, 0, 0, 1, 10, 0, 64, 48];
    let at = 18;
    forged.splice(at..at, view_bytes.drain(..));
    assert!(d.decode(&forged).is_err());
    assert_eq!(d.pixels(), &pixels[..]);
    assert_eq!(d.view(), Some(&view));
}
