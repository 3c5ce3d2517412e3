#!/usr/bin/env node
'use strict';
// The CLI is compiled to dist/ by `npm install` (the package's prepare script).
const path = require('node:path');
const fs = require('node:fs');
const entry = path.join(__dirname, '..', 'dist', 'cli', 'cli.js');
if (!fs.existsSync(entry)) {
  process.stderr.write(
    'governor: not built yet; run `npm install` (or `npm run build`) in ' + path.join(__dirname, '..') + '\n',
  );
  process.exit(1);
}
// Exit explicitly once the command is done: Temporal's native runtime (installed for pino log
// forwarding) keeps the event loop alive after workers and connections are closed. stdout and
// stderr are synchronous for files and pipes on Linux, so nothing written is lost.
require(entry)
  .main(process.argv)
  .then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`governor: ${err && err.message ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
