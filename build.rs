//! Writes the C header, include/portcullis.h, from src/ffi/ with the pinned cbindgen. The file
//! is rewritten only when its content changes, so a committed, current header is never touched
//! (CI checks it is current with `git diff --exit-code include/`).
//!
//! Set `PORTCULLIS_NO_HEADER=1` to skip the write (vendored or read-only sources).

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=PORTCULLIS_NO_HEADER");
    if env::var_os("PORTCULLIS_NO_HEADER").is_some_and(|v| v == "1") {
        return;
    }
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let config = match cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")) {
        Ok(config) => config,
        Err(e) => panic!("cbindgen.toml: {e}"),
    };
    let version = env::var("CARGO_PKG_VERSION").expect("set by cargo");
    let mut parts = version.split(['.', '-']);
    let mut next = || parts.next().unwrap_or("0").to_string();
    let (major, minor, patch) = (next(), next(), next());
    let defines = format!(
        "\n#define PORTCULLIS_VERSION \"{version}\"\n\
         #define PORTCULLIS_VERSION_MAJOR {major}\n\
         #define PORTCULLIS_VERSION_MINOR {minor}\n\
         #define PORTCULLIS_VERSION_PATCH {patch}\n"
    );
    let bindings = match cbindgen::Builder::new()
        // Only the C ABI: the rest of the crate's public constants are not part of it.
        .with_src(crate_dir.join("src/ffi/mod.rs"))
        .with_config(config)
        .with_after_include(defines)
        .generate()
    {
        Ok(bindings) => bindings,
        Err(e) => panic!("cbindgen could not generate include/portcullis.h: {e}"),
    };
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("portcullis.h");
    bindings.write_to_file(&out);
    let include = crate_dir.join("include");
    if include.is_dir() {
        // Rewrites only when the content differs.
        bindings.write_to_file(include.join("portcullis.h"));
    }
}
