// Pings a gRPC server over plaintext HTTP/2 (prior knowledge) `count` times in a row, with no
// data in between, as an abusive client would, and reports whether the server closed the
// connection with GOAWAY and why. Prints one JSON line:
//   {"acked": <pings answered>, "goaway": <bool>, "errorCode": <n>, "debug": "<opaque data>"}
// plus "error": <code> when the connection failed.
//
//   node ping_flood.mjs HOST:PORT COUNT
import http2 from 'node:http2';

const [address, countText] = process.argv.slice(2);
const count = Number(countText);
const session = http2.connect(`http://${address}`);
const result = { acked: 0, goaway: false, errorCode: null, debug: '' };
let finished = false;
const finish = () => {
  if (finished) return;
  finished = true;
  console.log(JSON.stringify(result));
  session.destroy();
};
session.on('goaway', (errorCode, lastStreamId, opaqueData) => {
  result.goaway = true;
  result.errorCode = errorCode;
  result.debug = opaqueData ? opaqueData.toString() : '';
  finish();
});
session.on('error', (err) => {
  result.error = err.code;
  finish();
});
session.on('connect', () => {
  for (let i = 0; i < count; i++) {
    session.ping((err) => {
      if (!err) result.acked++;
    });
  }
  // A server that tolerates the pings answers them all and keeps the connection open.
  setTimeout(finish, 1500);
});
