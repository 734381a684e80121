'use strict';
const path = require('node:path');

/** The repository root: bindings/node/scripts -> ../../.. */
const repoRoot = path.resolve(__dirname, '..', '..', '..');

/** The folder holding libportcullis.a (and libportcullis.so). */
function libDir() {
  if (process.env.PORTCULLIS_LIB_DIR) return path.resolve(process.env.PORTCULLIS_LIB_DIR);
  const target = process.env.CARGO_TARGET_DIR
    ? path.resolve(repoRoot, process.env.CARGO_TARGET_DIR)
    : path.join(repoRoot, 'target');
  return path.join(target, 'release');
}

/** The folder holding portcullis.h. */
function includeDir() {
  if (process.env.PORTCULLIS_INCLUDE_DIR) return path.resolve(process.env.PORTCULLIS_INCLUDE_DIR);
  return path.join(repoRoot, 'include');
}

module.exports = { repoRoot, libDir, includeDir };
