// Prints the URL the official AWS SDK for JavaScript v3 presigns for one S3 object, so the C++
// signer's URL can be compared with it byte for byte (tests/storage/origin/sigv4_test.cc).
// Usage: node presign_s3.mjs '{"endpoint":..., "region":..., "bucket":..., "key":...,
//   "accessKeyId":..., "secretAccessKey":..., "signingDateUnix":..., "expiresIn":...,
//   "method":"GET"|"PUT"}'
import { S3Client, GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";

const a = JSON.parse(process.argv[2]);
const client = new S3Client({
  region: a.region,
  endpoint: a.endpoint,
  forcePathStyle: true,
  credentials: { accessKeyId: a.accessKeyId, secretAccessKey: a.secretAccessKey },
  // Checksums only when an operation requires them: otherwise GetObject presigns also carry
  // x-amz-checksum-mode, a flag our device URLs have no use for.
  requestChecksumCalculation: "WHEN_REQUIRED",
  responseChecksumValidation: "WHEN_REQUIRED",
});
const input = { Bucket: a.bucket, Key: a.key };
const command = a.method === "PUT" ? new PutObjectCommand(input) : new GetObjectCommand(input);
const url = await getSignedUrl(client, command, {
  expiresIn: a.expiresIn,
  signingDate: new Date(a.signingDateUnix * 1000),
});
process.stdout.write(url + "\n");
