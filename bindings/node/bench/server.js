'use strict';
// One Express app for http.js, with the middleware named by argv[2]:
//   portcullis  portcullis.express(gate): CORS + rate limit by address, both header styles
//   peers       cors() + express-rate-limit (memory store), the same headers
//   none        no middleware
// Listens on 127.0.0.1, an ephemeral port, and prints it.
const express = require('express');

const mode = process.argv[2];
const app = express();
app.set('etag', false);

if (mode === 'portcullis') {
  const portcullis = require('..');
  const gate = portcullis.Gate.fromConfig(`
header_style = "both"

[[policy]]
name = "api"
limit = "1000000000/h"
burst = 1000000000

[[route]]
match = "/"
limits = [{ policy = "api", key = "ip" }]

[cors]
allowed_origins = ["https://app.test"]
allow_credentials = true
allowed_headers = ["Content-Type", "Authorization"]
max_age = "10m"
`);
  app.use(portcullis.express(gate));
} else if (mode === 'peers') {
  const cors = require('cors');
  const { rateLimit } = require('express-rate-limit');
  app.use(
    cors({
      origin: 'https://app.test',
      credentials: true,
      allowedHeaders: ['Content-Type', 'Authorization'],
      maxAge: 600,
      exposedHeaders: ['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset', 'RateLimit-Policy', 'RateLimit', 'Retry-After'],
    }),
  );
  app.use(rateLimit({ windowMs: 3_600_000, limit: 1_000_000_000, standardHeaders: 'draft-6', legacyHeaders: true }));
} else if (mode !== 'none') {
  throw new Error(`unknown mode ${mode}`);
}

app.get('/api/things', (req, res) => {
  res.json({ things: [1, 2, 3] });
});

const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
