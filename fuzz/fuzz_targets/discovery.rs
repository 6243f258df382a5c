#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mlflow_oidc_fuzz::discovery(data));
