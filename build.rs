//! Build script: records the commit the binary is built from, for `chorus --version` and the
//! `chorus_build_info` metric. From git when the source is a checkout, else from the
//! `CHORUS_COMMIT` environment variable (the Dockerfile passes it), else `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CHORUS_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let from_git = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let commit = from_git
        .or_else(|| {
            std::env::var("CHORUS_COMMIT")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=CHORUS_COMMIT={commit}");
}
