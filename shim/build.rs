//! Builds crius's static pause program, which the binary embeds as its offline pause image.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=pause/pause.c");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("pause");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = Command::new(&compiler)
        .args(["-static", "-Os", "-s", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg("pause/pause.c")
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("building pause/pause.c with {compiler} failed: {s} (needs a C compiler and static libc)"),
        Err(e) => panic!("running {compiler} to build pause/pause.c: {e}"),
    }
}
