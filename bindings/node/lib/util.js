'use strict';
const { fileURLToPath } = require('node:url');
const { typeError, rangeError } = require('./errors');

const U32_MAX = 0xffffffff;

/** Symbol.dispose where the runtime has it (Node >= 18.18 / 20.4), else Node's own name. */
const kDispose = Symbol.dispose ?? Symbol.for('nodejs.dispose');

/** A string or a Uint8Array (a Buffer is one). */
function isText(v) {
  return typeof v === 'string' || v instanceof Uint8Array;
}

function checkText(v, what) {
  if (!isText(v)) throw typeError(what, 'of type string or an instance of Uint8Array', v);
}

function checkOptionalText(v, what) {
  if (v != null && !isText(v)) {
    throw typeError(what, 'of type string, an instance of Uint8Array, null or undefined', v);
  }
}

function checkU32(v, what) {
  if (typeof v !== 'number') throw typeError(what, 'of type number', v);
  if (!Number.isInteger(v) || v < 0 || v > U32_MAX) throw rangeError(what, `an integer >= 0 and <= ${U32_MAX}`, v);
}

/** A config file's path: a string, a Buffer or a file: URL. */
function filePath(p, what = 'path') {
  if (p instanceof URL) return fileURLToPath(p);
  if (typeof p === 'string' || p instanceof Uint8Array) return p;
  throw typeError(what, 'of type string, an instance of Buffer or URL', p);
}

/** A header's value as one string: repeated values joined with ','. */
function joinHeader(v) {
  if (v == null) return undefined;
  if (Array.isArray(v)) return v.join(',');
  return v;
}

module.exports = { U32_MAX, kDispose, isText, checkText, checkOptionalText, checkU32, filePath, joinHeader };
