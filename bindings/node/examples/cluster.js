'use strict';
// Node's cluster with portcullis: worker processes share one port and, through the shared
// store, one set of counters, so a client gets its 10 requests a minute whichever worker
// answers (with a memory store each worker would count alone: 4 workers, 40 a minute).
//
//   node examples/cluster.js                      # 4 workers on http://127.0.0.1:3000
//   for i in $(seq 12); do curl -s -o /dev/null -w '%{http_code} ' localhost:3000/; done
//   200 200 200 200 200 200 200 200 200 200 429 429
//
// Environment: PORT (default 3000; 0 picks a free one), HOST (127.0.0.1), WORKERS (4),
// PORTCULLIS_STORE (the shared store's folder; default /dev/shm/portcullis/cluster-example on
// tmpfs, else one under the system's temporary folder).
//
// Workers are spawned, not forked: each one opens the gate, and so the store, itself. The
// store's folder is a few files mapped by every worker (docs/STORE.md, "The shared store").
const cluster = require('node:cluster');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const portcullis = require('..'); // require('portcullis') in an app

const PORT = Number(process.env.PORT ?? 3000);
const HOST = process.env.HOST ?? '127.0.0.1';
const WORKERS = Number(process.env.WORKERS ?? 4);
const STORE =
  process.env.PORTCULLIS_STORE ??
  (fs.existsSync('/dev/shm')
    ? '/dev/shm/portcullis/cluster-example'
    : path.join(os.tmpdir(), 'portcullis', 'cluster-example'));

const CONFIG = `
[store]
kind = "shared"
path = ${JSON.stringify(STORE)}
capacity = 10_000

# 10 requests a minute per client address, all at once if it likes.
[[policy]]
name = "per-client"
limit = "10/1m"
burst = 10

[[route]]
match = "/"
limits = [{ policy = "per-client", key = "ip" }]
`;

if (cluster.isPrimary) {
  let listening = 0;
  let stopping = false;
  cluster.on('listening', (worker, address) => {
    listening += 1;
    if (listening === WORKERS) {
      console.log(`listening on http://${HOST}:${address.port} with ${WORKERS} workers (store ${STORE})`);
    }
  });
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers).length === 0) process.exit(0);
      return;
    }
    console.error(`worker ${worker.process.pid} exited (${signal ?? code}); starting another`);
    cluster.fork();
  });
  const stop = () => {
    if (stopping) return;
    stopping = true;
    for (const worker of Object.values(cluster.workers)) worker.kill('SIGTERM');
    setTimeout(() => process.exit(1), 5000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  for (let i = 0; i < WORKERS; i++) cluster.fork();
} else {
  const gate = portcullis.Gate.fromConfig(CONFIG);
  const limit = portcullis.express(gate);
  const server = http.createServer((req, res) => {
    res.setHeader('X-Worker', String(process.pid));
    limit(req, res, (err) => {
      if (err) {
        res.statusCode = 500;
        res.end(`${err.message}\n`);
        return;
      }
      res.end(`hello from worker ${process.pid}\n`);
    });
  });
  server.listen(PORT, HOST);
  let closing = false;
  const shutdown = () => {
    if (closing) return;
    closing = true;
    server.close(() => {
      gate.close();
      process.exit(0);
    });
    server.closeAllConnections();
  };
  process.on('SIGTERM', shutdown);
  process.on('disconnect', shutdown); // the primary is gone
}
