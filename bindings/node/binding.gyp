{
  # The addon is plain C against Node-API (NAPI_VERSION 8: one build runs on Node 18 to 22),
  # over include/portcullis.h, linking the static library cargo builds
  # (target/release/libportcullis.a, or $CARGO_TARGET_DIR/release) into the .node file.
  "variables": {
    "portcullis_lib_dir%": "<!(node scripts/libdir.js)",
    "portcullis_include_dir%": "<!(node scripts/libdir.js --include)"
  },
  "targets": [
    {
      "target_name": "portcullis",
      "sources": ["src/addon.c"],
      "include_dirs": ["<(portcullis_include_dir)"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags": ["-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "libraries": [
        "<(portcullis_lib_dir)/libportcullis.a",
        # What the Rust staticlib needs (cargo rustc -- --print native-static-libs).
        "-lpthread", "-ldl", "-lm", "-lrt", "-lutil"
      ],
      "ldflags": [
        # Keep the library's symbols (Rust's std among them) out of the addon's exports.
        "-Wl,--exclude-libs,ALL",
        "-Wl,--gc-sections"
      ]
    }
  ]
}
