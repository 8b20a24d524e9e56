// Drives the sandbox with jsforce, one JSON command per stdin line, one JSON answer per stdout line.
//
// Started once per test module by tests/test_sandbox_clients.py (NODE_PATH points at the npm cache holding
// jsforce, NODE_EXTRA_CA_CERTS at the sandbox's CA). A command is {"id", "op", "args", "token", "url", "version"};
// the answer is {"id", "ok": true, "result"} or {"id", "ok": false, "error": {"name", "errorCode", "message"}}.
'use strict';

const readline = require('node:readline');
const jsforce = require('jsforce');

function connection(cmd) {
  const conn = new jsforce.Connection({
    instanceUrl: cmd.url,
    loginUrl: cmd.url,
    accessToken: cmd.token,
    version: cmd.version || '62.0',
  });
  conn.bulk2.pollInterval = 50; // the sandbox finishes a job in 0.2 s; the default polls once a second
  conn.bulk2.pollTimeout = 20000;
  return conn;
}

const ops = {
  async query(conn, { soql, scanAll }) {
    const result = await conn.query(soql, { scanAll: Boolean(scanAll) }).run({ autoFetch: true, maxFetch: 100000 });
    return { totalSize: result.totalSize, done: result.done, records: result.records };
  },
  async update(conn, { type, records }) {
    return conn.sobject(type).update(records, { allowRecursive: true });
  },
  async retrieve(conn, { type, ids, fields }) {
    return conn.retrieve(type, ids, { fields });
  },
  async describe(conn, { type }) {
    return conn.describe(type);
  },
  async describeGlobal(conn) {
    return conn.describeGlobal();
  },
  async identity(conn) {
    return conn.identity();
  },
  async limits(conn) {
    return conn.limits();
  },
  async bulkQuery(conn, { soql }) {
    const stream = await conn.bulk2.query(soql);
    const records = [];
    for await (const record of stream) records.push(record);
    return records;
  },
  async bulkUpdate(conn, { type, csv, lineEnding }) {
    return conn.bulk2.loadAndWaitForResults({ object: type, operation: 'update', input: csv, lineEnding });
  },
  async request(conn, { method, path, body }) {
    return conn.request({
      method,
      url: `/services/data/v${conn.version}/${path}`,
      body: body === undefined ? undefined : JSON.stringify(body),
      headers: { 'content-type': 'application/json' },
    });
  },
  async jwtLogin(conn, { assertion }) {
    const oauth2 = new jsforce.OAuth2({ loginUrl: conn.loginUrl });
    const fresh = new jsforce.Connection({ oauth2, version: conn.version });
    await fresh.authorize({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion });
    const identity = await fresh.identity();
    return { instanceUrl: fresh.instanceUrl, userInfo: fresh.userInfo, username: identity.username };
  },
};

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', async (line) => {
  const cmd = JSON.parse(line);
  let answer;
  try {
    const op = ops[cmd.op];
    if (!op) throw new Error(`unknown op ${cmd.op}`);
    answer = { id: cmd.id, ok: true, result: await op(connection(cmd), cmd.args || {}) };
  } catch (err) {
    answer = { id: cmd.id, ok: false, error: { name: err.name, errorCode: err.errorCode, message: err.message } };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
});
