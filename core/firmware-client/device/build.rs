//! Puts the selected board's memory map where cortex-m-rt's `link.x` finds it.
use std::{env, fs, path::PathBuf};

fn main() {
    let board = if env::var_os("CARGO_FEATURE_MPS2_AN386").is_some() {
        "mps2-an386"
    } else {
        "stm32f407"
    };
    let map = fs::read(format!("memory/{board}.x")).expect("read the board's memory map");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    fs::write(out.join("memory.x"), map).expect("write memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory");
    println!("cargo:rerun-if-changed=build.rs");
}
