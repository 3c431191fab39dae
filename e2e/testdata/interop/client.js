// A proxyless xDS client on grpc-js with @grpc/grpc-js-xds, driven over
// stdin: the same protocol as client.py (see there).
//
// Usage: GRPC_XDS_BOOTSTRAP=bootstrap.json node client.js xds:///<target>
'use strict';
const grpc = require('@grpc/grpc-js');
const xds = require('@grpc/grpc-js-xds');
const readline = require('readline');

const METHOD = '/grpc.testing.TestService/UnaryCall';

function varint(b, i) {
  let shift = 0, result = 0;
  for (;;) {
    const c = b[i++];
    result += (c & 0x7f) * 2 ** shift;
    if (c < 0x80) return [result, i];
    shift += 7;
  }
}

function stringField(b, want) {
  let i = 0, out = '';
  while (i < b.length) {
    let key;
    [key, i] = varint(b, i);
    const num = Math.floor(key / 8), typ = key & 7;
    if (typ === 0) { [, i] = varint(b, i); }
    else if (typ === 2) {
      let n;
      [n, i] = varint(b, i);
      if (num === want) out = b.subarray(i, i + n).toString();
      i += n;
    } else if (typ === 1) i += 8;
    else if (typ === 5) i += 4;
    else throw new Error('bad wire type ' + typ);
  }
  return out;
}

function call(client, md) {
  const meta = new grpc.Metadata();
  for (const [k, v] of Object.entries(md || {})) meta.set(k, v);
  return new Promise((resolve) => {
    client.makeUnaryRequest(METHOD, () => Buffer.alloc(0), (b) => b, {}, meta,
      { deadline: Date.now() + 10000 }, (err, resp) => resolve({ err, resp }));
  });
}

async function main() {
  xds.register();
  const version = require('@grpc/grpc-js-xds/package.json').version;
  const jsVersion = require('@grpc/grpc-js/package.json').version;
  console.log(JSON.stringify({ client: 'grpc-js-xds (grpc-js ' + jsVersion + ')', version }));
  const client = new grpc.Client(process.argv[2], grpc.credentials.createInsecure());
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const req = JSON.parse(line);
    const tracks = {}, versions = {}, errors = {}, failures = {}, messages = [];
    for (let k = 0; k < req.n; k++) {
      const { err, resp } = await call(client, req.md || {});
      if (err) {
        const code = grpc.status[err.code] || String(err.code);
        errors[code] = (errors[code] || 0) + 1;
        const key = code + ': ' + err.details;
        failures[key] = (failures[key] || 0) + 1;
        if (messages.length < 3) messages.push(code + ': ' + err.details);
      } else {
        const host = stringField(resp, 6);
        tracks[host] = (tracks[host] || 0) + 1;
        const version = stringField(resp, 4);
        if (version) versions[version] = (versions[version] || 0) + 1;
      }
    }
    console.log(JSON.stringify({ tracks, versions, errors, failures, messages }));
  }
  client.close();
}

main().catch((e) => { console.error(e); process.exit(1); });
