//! A minimal VNC (RFB 3.8) client for the x11vnc comparison: no security,
//! Tight encoding (zlib and raw as fallbacks) with JPEG at quality level 8
//! (the reference; x11vnc then codes photo-like rectangles as JPEG
//! q92 4:4:4, and never sends them again exactly, where Assent does), and
//! the next incremental update request as soon as one update has arrived,
//! as viewers do. It skips the pixel data without
//! decoding it (the server's cost is what is measured) and counts updates.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context as _};

const TIGHT: i32 = 7;
const ZLIB: i32 = 6;
const RAW: i32 = 0;
/// Pseudo-encoding "JPEG quality level 8" (-32 + 8).
const JPEG_QUALITY_8: i32 = -24;

/// A connected client reading updates on its own thread until dropped.
pub struct RfbClient {
    stream: TcpStream,
    /// Framebuffer updates with at least one rectangle received so far.
    pub updates: Arc<AtomicU64>,
    /// Bytes of server messages read since the first update (headers
    /// included), to set beside the agent's frame bytes.
    pub bytes: Arc<AtomicU64>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl RfbClient {
    /// Connects to `127.0.0.1:port` and starts reading updates; returns once
    /// the first (full) update has arrived.
    pub fn connect(port: u16) -> anyhow::Result<RfbClient> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).context("connecting to x11vnc")?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        s.set_nodelay(true)?;
        let tpixel = handshake(&mut s)?;
        let updates = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let mut reader = Reader {
            s: s.try_clone()?,
            tpixel,
            read: bytes.clone(),
        };
        // The first, full update before measuring anything.
        reader.message()?;
        bytes.store(0, Ordering::Relaxed);
        let u = updates.clone();
        let thread = std::thread::spawn(move || loop {
            reader.s.write_all(&update_request(true))?;
            loop {
                if reader.message()? {
                    u.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        });
        Ok(RfbClient {
            stream: s,
            updates,
            bytes,
            thread: Some(thread),
        })
    }
}

impl Drop for RfbClient {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn update_request(incremental: bool) -> [u8; 10] {
    // FramebufferUpdateRequest for the whole screen (the server clips).
    [3, u8::from(incremental), 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]
}

/// Version, no security, shared; asks for Tight. Returns the size of a
/// Tight pixel (TPIXEL) for the server's pixel format.
fn handshake(s: &mut TcpStream) -> anyhow::Result<usize> {
    let mut version = [0u8; 12];
    s.read_exact(&mut version)?;
    if !version.starts_with(b"RFB 003.") {
        bail!("not an RFB server: {:?}", String::from_utf8_lossy(&version));
    }
    s.write_all(b"RFB 003.008\n")?;
    let n = read_u8(s)?;
    let mut types = vec![0u8; n.into()];
    s.read_exact(&mut types)?;
    if !types.contains(&1) {
        bail!("the server offers no 'None' security (types {types:?})");
    }
    s.write_all(&[1])?;
    if read_u32(s)? != 0 {
        bail!("the server refused the connection");
    }
    s.write_all(&[1])?; // ClientInit: shared
    let mut init = [0u8; 24];
    s.read_exact(&mut init)?;
    let (bpp, depth, true_colour) = (init[4], init[5], init[7] != 0);
    let name_len = u32::from_be_bytes(init[20..24].try_into()?);
    std::io::copy(&mut (&mut *s).take(name_len.into()), &mut std::io::sink())?;
    let mut enc = vec![2u8, 0, 0, 4];
    for e in [TIGHT, ZLIB, RAW, JPEG_QUALITY_8] {
        enc.extend(e.to_be_bytes());
    }
    s.write_all(&enc)?;
    s.write_all(&update_request(false))?;
    Ok(if bpp == 32 && depth == 24 && true_colour {
        3
    } else {
        usize::from(bpp / 8)
    })
}

fn read_u8(s: &mut impl Read) -> anyhow::Result<u8> {
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    Ok(b[0])
}

fn read_u32(s: &mut impl Read) -> anyhow::Result<u32> {
    let mut b = [0u8; 4];
    s.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

struct Reader {
    s: TcpStream,
    tpixel: usize,
    read: Arc<AtomicU64>,
}

impl Reader {
    fn bytes<const N: usize>(&mut self) -> anyhow::Result<[u8; N]> {
        let mut b = [0u8; N];
        self.s.read_exact(&mut b)?;
        self.read.fetch_add(N as u64, Ordering::Relaxed);
        Ok(b)
    }

    fn skip(&mut self, n: u64) -> anyhow::Result<()> {
        let got = std::io::copy(&mut (&mut self.s).take(n), &mut std::io::sink())?;
        self.read.fetch_add(got, Ordering::Relaxed);
        if got != n {
            bail!("the server closed the connection");
        }
        Ok(())
    }

    /// Reads one server message; true when it was an update with pixels.
    fn message(&mut self) -> anyhow::Result<bool> {
        let [kind] = self.bytes::<1>()?;
        match kind {
            0 => {
                let [_, hi, lo] = self.bytes::<3>()?;
                let rects = u16::from_be_bytes([hi, lo]);
                for _ in 0..rects {
                    self.rect()?;
                }
                Ok(rects > 0)
            }
            1 => {
                let h = self.bytes::<5>()?;
                self.skip(u64::from(u16::from_be_bytes([h[3], h[4]])) * 6)?;
                Ok(false)
            }
            2 => Ok(false),
            3 => {
                let h = self.bytes::<7>()?;
                self.skip(u32::from_be_bytes(h[3..7].try_into()?).into())?;
                Ok(false)
            }
            k => bail!("unknown server message {k}"),
        }
    }

    fn rect(&mut self) -> anyhow::Result<()> {
        let h = self.bytes::<12>()?;
        let w = u64::from(u16::from_be_bytes([h[4], h[5]]));
        let ht = u64::from(u16::from_be_bytes([h[6], h[7]]));
        match i32::from_be_bytes(h[8..12].try_into()?) {
            RAW => self.skip(w * ht * self.tpixel.max(1) as u64),
            ZLIB => {
                let len = u32::from_be_bytes(self.bytes::<4>()?);
                self.skip(len.into())
            }
            TIGHT => self.tight(w, ht),
            e => bail!("unexpected encoding {e}"),
        }
    }

    /// Skips one Tight rectangle (RFB spec, "Tight encoding").
    fn tight(&mut self, w: u64, h: u64) -> anyhow::Result<()> {
        let [control] = self.bytes::<1>()?;
        let tp = self.tpixel as u64;
        match control >> 4 {
            8 => return self.skip(tp), // fill
            9 => {
                let n = self.compact_len()?;
                return self.skip(n); // JPEG
            }
            c if c & 8 != 0 => bail!("bad Tight control byte {control:#x}"),
            _ => {}
        }
        let filter = if control & 0x40 != 0 {
            self.bytes::<1>()?[0]
        } else {
            0
        };
        let size = match filter {
            0 | 2 => w * h * tp,
            1 => {
                let colours = u64::from(self.bytes::<1>()?[0]) + 1;
                self.skip(colours * tp)?;
                if colours == 2 {
                    w.div_ceil(8) * h
                } else {
                    w * h
                }
            }
            f => bail!("unknown Tight filter {f}"),
        };
        if size < 12 {
            self.skip(size)
        } else {
            let n = self.compact_len()?;
            self.skip(n)
        }
    }

    fn compact_len(&mut self) -> anyhow::Result<u64> {
        let mut len = 0u64;
        for i in 0..3 {
            let [b] = self.bytes::<1>()?;
            let bits = if i == 2 { b } else { b & 0x7f };
            len |= u64::from(bits) << (7 * i);
            if i == 2 || b & 0x80 == 0 {
                break;
            }
        }
        Ok(len)
    }
}
