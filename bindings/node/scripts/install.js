'use strict';
// `npm install`'s build step: builds the Rust library with cargo when it is missing or older
// than its sources, then the addon with node-gyp.
//
// node-gyp is npm's own (npm_config_node_gyp) or one on PATH. Node's headers are taken from
// the running node's install prefix when they are there (<prefix>/include/node, as Debian's and
// NodeSource's packages and the official tarballs lay them out), so no download is needed;
// set npm_config_nodedir to use others.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { repoRoot, libDir } = require('./paths');

const pkgDir = path.resolve(__dirname, '..');

function run(cmd, args, cwd) {
  console.log(`portcullis: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd, stdio: 'inherit', env: process.env });
  if (r.error) {
    console.error(`portcullis: could not run ${cmd}: ${r.error.message}`);
    process.exit(1);
  }
  if (r.status !== 0) process.exit(r.status ?? 1);
}

/** The newest modification time under `dir` (files only), 0 when it does not exist. */
function newest(dir) {
  let latest = 0;
  let entries;
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) latest = Math.max(latest, newest(p));
    else if (e.isFile()) latest = Math.max(latest, fs.statSync(p).mtimeMs);
  }
  return latest;
}

function ensureLibrary() {
  const lib = path.join(libDir(), 'libportcullis.a');
  let libTime = 0;
  try {
    libTime = fs.statSync(lib).mtimeMs;
  } catch {
    libTime = 0;
  }
  const sources = Math.max(
    newest(path.join(repoRoot, 'src')),
    fs.existsSync(path.join(repoRoot, 'Cargo.toml'))
      ? fs.statSync(path.join(repoRoot, 'Cargo.toml')).mtimeMs
      : 0,
  );
  if (libTime && (process.env.PORTCULLIS_LIB_DIR || libTime >= sources)) return;
  if (!fs.existsSync(path.join(repoRoot, 'Cargo.toml'))) {
    console.error(`portcullis: ${lib} is missing and there is no Cargo.toml at ${repoRoot} to build it`);
    process.exit(1);
  }
  const cargo = process.env.CARGO || 'cargo';
  console.log(libTime ? 'portcullis: the library is older than its sources' : `portcullis: ${lib} is missing`);
  run(cargo, ['build', '--release', '-p', 'portcullis', '--lib'], repoRoot);
  if (!fs.existsSync(lib)) {
    console.error(`portcullis: cargo finished but ${lib} is not there (CARGO_TARGET_DIR?)`);
    process.exit(1);
  }
}

function nodeGyp() {
  const candidates = [];
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  // npm's bundled copy next to this node.
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  candidates.push(path.join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  for (const c of candidates) {
    if (c && fs.existsSync(c)) return [process.execPath, [c]];
  }
  return ['node-gyp', []];
}

function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  const version = path.join(prefix, 'include', 'node', 'node_version.h');
  if (!fs.existsSync(path.join(prefix, 'include', 'node', 'common.gypi'))) return [];
  try {
    const text = fs.readFileSync(version, 'utf8');
    const major = /#define NODE_MAJOR_VERSION (\d+)/.exec(text);
    if (!major || Number(major[1]) !== Number(process.versions.node.split('.')[0])) return [];
  } catch {
    return [];
  }
  return [`--nodedir=${prefix}`];
}

ensureLibrary();
const [cmd, pre] = nodeGyp();
run(cmd, [...pre, 'rebuild', ...nodedirArgs()], pkgDir);
