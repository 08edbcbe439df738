#![no_main]

// The targets check their own memory use through this allocator.
#[global_allocator]
static ALLOC: assent_fuzz::alloc::Counting = assent_fuzz::alloc::Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    assent_fuzz::recording(data);
});
