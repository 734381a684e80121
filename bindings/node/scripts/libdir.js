'use strict';
// For binding.gyp: prints the folder holding libportcullis.a ($PORTCULLIS_LIB_DIR, else the
// release folder of cargo's target dir: $CARGO_TARGET_DIR, relative to the repository root, or
// target/), or with --include the folder holding portcullis.h ($PORTCULLIS_INCLUDE_DIR, else
// the repository's include/).
const { libDir, includeDir } = require('./paths');

process.stdout.write(process.argv.includes('--include') ? includeDir() : libDir());
