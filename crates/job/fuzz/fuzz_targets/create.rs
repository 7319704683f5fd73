#![no_main]

static DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // libfuzzer-sys aborts on every panic, even one the code catches on
    // purpose (gtmpl panics on some malformed templates; kala turns that
    // into an error). Put the default hook back: a panic that escapes is
    // still a crash, because libfuzzer-sys aborts on it.
    DEFAULT_HOOK.call_once(|| drop(std::panic::take_hook()));
    kala_create_fuzz::create_path(data);
});
