//! Recovery over damaged segment files: `cargo fuzz run recover --sanitizer none`.
//! The input is decoded into mutations of a valid log (see `slotlog_fuzz::check`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = slotlog_fuzz::check(data);
});
