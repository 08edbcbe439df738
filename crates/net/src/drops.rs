//! Datagrams the kernel dropped at a process's UDP sockets, read from
//! `/proc` (Linux): quinn does not count them, and a full receive buffer
//! is the first thing to look at when sessions stutter under load. The
//! relay reads its own; the benchmark reads the relay's.

use std::collections::HashSet;
use std::path::Path;

/// Sum of the `drops` column over this process's UDP sockets; `None` where
/// `/proc` does not say (not Linux, or hidden).
pub fn own_udp_drops() -> Option<u64> {
    udp_drops(Path::new("/proc/self"))
}

/// The same for the process whose `/proc` directory is `process`
/// (`/proc/PID`).
pub fn udp_drops(process: &Path) -> Option<u64> {
    let inodes = socket_inodes(process)?;
    let mut total = None;
    for table in ["net/udp", "net/udp6"] {
        if let Ok(text) = std::fs::read_to_string(process.join(table)) {
            *total.get_or_insert(0) += drops_of(&text, &inodes);
        }
    }
    total
}

/// Inodes of the sockets among the process's open files.
fn socket_inodes(process: &Path) -> Option<HashSet<u64>> {
    let entries = std::fs::read_dir(process.join("fd")).ok()?;
    let inodes = entries
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect();
    Some(inodes)
}

/// Adds up `drops` (the last column) of the rows of a `/proc/net/udp`
/// table whose `inode` (the tenth column) is one of `inodes`.
fn drops_of(table: &str, inodes: &HashSet<u64>) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let inode: u64 = cols.get(9)?.parse().ok()?;
            let drops: u64 = cols.last()?.parse().ok()?;
            inodes.contains(&inode).then_some(drops)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_only_our_sockets() {
        let table = "\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  120: 0100007F:1151 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17
  121: 0100007F:1152 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 999 2 0000000000000000 5
";
        let ours: HashSet<u64> = [4242].into();
        assert_eq!(drops_of(table, &ours), 17);
        assert_eq!(drops_of(table, &HashSet::new()), 0);
    }

    #[test]
    fn reads_this_process() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        if std::path::Path::new("/proc/self/net/udp").exists() {
            assert_eq!(own_udp_drops(), Some(0));
            let pid = std::process::id();
            assert_eq!(udp_drops(Path::new(&format!("/proc/{pid}"))), Some(0));
        }
        drop(socket);
    }
}
