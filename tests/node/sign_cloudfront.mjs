// Prints the URL the official @aws-sdk/cloudfront-signer signs for the given inputs, so the
// C++ signer's URL can be compared with it byte for byte (tests/storage/origin/cloudfront_test).
// Usage: node sign_cloudfront.mjs '{"url":..., "keyPairId":..., "privateKeyFile":...,
//   "dateLessThan":<unix s>, "dateGreaterThan":<unix s, optional>, "ipAddress":<optional>}'
import { readFileSync } from "node:fs";
import { getSignedUrl } from "@aws-sdk/cloudfront-signer";

const a = JSON.parse(process.argv[2]);
const url = getSignedUrl({
  url: a.url,
  keyPairId: a.keyPairId,
  privateKey: readFileSync(a.privateKeyFile, "utf8"),
  dateLessThan: new Date(a.dateLessThan * 1000).toISOString(),
  dateGreaterThan: a.dateGreaterThan ? new Date(a.dateGreaterThan * 1000).toISOString() : undefined,
  ipAddress: a.ipAddress,
});
process.stdout.write(url + "\n");
