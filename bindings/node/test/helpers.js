'use strict';
// Shared by the tests (not a test file itself: `npm test` runs test/*.test.js).
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

/** A gate config for the middleware tests: a small API quota, one slot, CORS for app.test. */
const GATE_CONFIG = `
header_style = "legacy"

[[policy]]
name = "api"
limit = "3/1m"
burst = 3

[[policy]]
name = "slots"
algorithm = "concurrency"
limit = 1
lease_timeout = "1m"

[[route]]
match = "/slow"
limits = [{ policy = "slots", key = "global" }]

[[route]]
match = "/api/"
limits = [{ policy = "api", key = "principal" }]

[cors]
allowed_origins = ["http://app.test"]
allowed_methods = ["PUT", "DELETE"]
allowed_headers = ["Content-Type", "Authorization"]
max_age = "10m"
`;

const LIMITER_CONFIG = `
[store]
capacity = 20000

[[policy]]
name = "api"
limit = "10/s"
burst = 3

[[policy]]
name = "login"
algorithm = "fixed_window"
limit = "5/15m"
block = "15m"

[[policy]]
name = "export"
algorithm = "concurrency"
limit = 2
lease_timeout = "1m"
`;

/** A fresh temporary folder, removed when the process exits. */
function tempDir(prefix = 'portcullis-node-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Starts a node:http server on 127.0.0.1 and resolves its base URL and a close function. */
function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({
        url: `http://127.0.0.1:${port}`,
        close: () =>
          new Promise((done) => {
            if (typeof server.closeAllConnections === 'function') server.closeAllConnections();
            server.close(() => done());
          }),
      });
    });
  });
}

/** A promise with its resolve function, for events the tests wait on. */
function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Rejects after `ms` (unref'd) unless `promise` settles first. */
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

module.exports = { GATE_CONFIG, LIMITER_CONFIG, tempDir, listen, deferred, within };
