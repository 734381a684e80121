'use strict';
// Prints the folder holding libportcullis.a: $PORTCULLIS_LIB_DIR, else the release folder of
// cargo's target dir ($CARGO_TARGET_DIR, relative to the repository root, or target/).
const { libDir } = require('./paths');

process.stdout.write(libDir());
