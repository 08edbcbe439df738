//! Its own test binary (one process, one test): the thresholds are
//! process-wide, and the point is what glibc does after a big free.

/// Anonymous resident memory of this process, bytes.
fn rss_anon() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb * 1024
}

/// Allocates `n` blocks of `size` bytes, touches every page, frees them.
fn churn(n: usize, size: usize) {
    let blocks: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8 | 1; size]).collect();
    assert_eq!(blocks.len(), n);
}

#[test]
fn memory_freed_after_a_big_block_goes_back_to_the_system() {
    assert!(assent_heap::give_back_freed_memory());
    // A big block freed first: without fixed thresholds, glibc would now
    // serve every block under 16 MiB from its heap and keep it afterwards.
    churn(1, 16 << 20);
    let before = rss_anon();
    // 18 MiB in 1.5 MiB blocks, freed: under the 32 MiB that glibc's
    // raised trim threshold would let pile up.
    churn(12, 3 << 19);
    let kept = rss_anon().saturating_sub(before);
    assert!(kept < 4 << 20, "{} MiB stayed resident", kept >> 20);
}
