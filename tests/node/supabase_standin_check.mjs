#!/usr/bin/env node
// Proves supabase_standin.mjs faithful enough by driving it with the OFFICIAL clients
// (@supabase/storage-js and tus-js-client, pinned in package.json next to this file).
// Starts the stand-in on port 0, runs every check with node:assert, kills it by PID at the
// end (also on failure) and exits non-zero on the first failed check, saying which.

import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { StorageClient } from '@supabase/storage-js'
import * as tus from 'tus-js-client'

const here = path.dirname(fileURLToPath(import.meta.url))
const serverJs = path.join(here, 'supabase_standin.mjs')
const secret = 'standin-jwt-secret-' + crypto.randomBytes(8).toString('hex')
const MiB = 1024 * 1024

let step = 'start'
const check = async (name, fn) => { step = name; await fn(); console.log(`ok - ${name}`) }

function startServer(root) {
  const child = spawn(process.execPath, [serverJs, '--root', root, '--port', '0', '--jwt-secret', secret,
    '--service-key', mintKey(),
    '--max-standard-upload-bytes', String(2 * MiB)], { stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error('stand-in did not print LISTENING')), 10000)
    child.on('exit', (code) => reject(new Error(`stand-in exited early (${code})`)))
    child.stdout.on('data', (d) => {
      out += d
      const m = /^LISTENING (\d+)$/m.exec(out)
      if (m) { clearTimeout(timer); resolve({ child, port: Number(m[1]) }) }
    })
  })
}

function mintKey(...extra) {
  const r = spawnSync(process.execPath, [serverJs, '--print-service-key', '--jwt-secret', secret, ...extra], { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  return r.stdout.trim()
}
// An anon key as Supabase issues them: HS256, role "anon".
function anonKey() {
  const b = (o) => Buffer.from(JSON.stringify(o)).toString('base64url')
  const data = `${b({ alg: 'HS256', typ: 'JWT' })}.${b({ role: 'anon', iat: Math.floor(Date.now() / 1000) })}`
  return `${data}.${crypto.createHmac('sha256', secret).update(data).digest('base64url')}`
}

// Asserts a StorageApiError from storage-js carries the real wire shape.
function assertApiError(error, status, code) {
  assert.ok(error, `expected an error ${code}`)
  assert.equal(error.status, 400, `HTTP status for ${code}`)
  assert.equal(error.statusCode, status, `body statusCode for ${code}`)
}

async function tusUpload(file, opts) {
  return new Promise((resolve, reject) => {
    const up = new tus.Upload(fs.createReadStream(file), {
      chunkSize: 6 * MiB, // Supabase requires 6 MiB chunks for resumable uploads
      retryDelays: [],
      removeFingerprintOnSuccess: true,
      onError: reject,
      onSuccess: () => resolve(up),
      ...opts(() => up, resolve),
    })
    up.start()
  })
}

async function main(tmp) {
  const root = path.join(tmp, 'root')
  const { child, port } = await startServer(root)
  const base = `http://127.0.0.1:${port}/storage/v1`
  const key = mintKey()
  const storage = new StorageClient(base, { apikey: key, Authorization: `Bearer ${key}` })
  const bucket = 'models-' + crypto.randomBytes(3).toString('hex')
  const pub = bucket + '-pub'
  try {
    await check('createBucket/getBucket/listBuckets', async () => {
      let r = await storage.createBucket(bucket, { public: false })
      assert.equal(r.error, null, r.error?.message)
      assert.equal(r.data.name, bucket)
      r = await storage.createBucket(pub, { public: true })
      assert.equal(r.error, null)
      r = await storage.createBucket(bucket, { public: false })
      assertApiError(r.error, '409', 'BucketAlreadyExists')
      r = await storage.getBucket(bucket)
      assert.equal(r.data.id, bucket)
      assert.equal(r.data.public, false)
      r = await storage.listBuckets()
      assert.deepEqual(r.data.map((b) => b.id).sort(), [bucket, pub].sort())
      r = await storage.getBucket('nope')
      assertApiError(r.error, '404', 'NoSuchBucket')
      assert.equal(r.error.message, 'Bucket not found')
    })

    const files = storage.from(bucket)
    const small = crypto.randomBytes(300 * 1024)
    await check('upload Buffer (raw body) and Blob (multipart), duplicate, upsert', async () => {
      let r = await files.upload('llama/v1/model.gguf', small, { contentType: 'application/octet-stream' })
      assert.equal(r.error, null, r.error?.message)
      assert.equal(r.data.fullPath, `${bucket}/llama/v1/model.gguf`)
      assert.equal(r.data.path, 'llama/v1/model.gguf')
      assert.match(r.data.id, /^[0-9a-f-]{36}$/)
      r = await files.upload('llama/v1/model.gguf', small)
      assertApiError(r.error, '409', 'KeyAlreadyExists')
      assert.equal(r.error.message, 'The resource already exists')
      r = await files.upload('llama/v1/model.gguf', Buffer.from('v2'), { upsert: true, contentType: 'text/plain' })
      assert.equal(r.error, null, r.error?.message)
      r = await files.upload('blob/m.bin', new Blob([small], { type: 'application/x-coreml' }), { cacheControl: '120' })
      assert.equal(r.error, null, r.error?.message)
      r = await files.update('llama/v1/model.gguf', small, { contentType: 'application/octet-stream' })
      assert.equal(r.error, null, r.error?.message)
    })

    await check('standard upload cap → EntityTooLarge', async () => {
      const r = await files.upload('too/big.bin', Buffer.alloc(2 * MiB + 1))
      assertApiError(r.error, '413', 'EntityTooLarge')
      const r2 = await files.upload('too/big2.bin', new Blob([Buffer.alloc(2 * MiB + 1)]))
      assertApiError(r2.error, '413', 'EntityTooLarge')
    })

    await check('download (Buffer and multipart Blob bodies) byte for byte', async () => {
      let r = await files.download('llama/v1/model.gguf')
      assert.equal(r.error, null, r.error?.message)
      assert.ok(Buffer.from(await r.data.arrayBuffer()).equals(small))
      r = await files.download('blob/m.bin')
      assert.ok(Buffer.from(await r.data.arrayBuffer()).equals(small))
      assert.equal(r.data.type, 'application/x-coreml')
      r = await files.download('nope/missing.bin')
      assertApiError(r.error, '404', 'NoSuchKey')
    })

    await check('info / exists', async () => {
      let r = await files.info('blob/m.bin')
      assert.equal(r.error, null, r.error?.message)
      assert.equal(r.data.size, small.length)
      assert.equal(r.data.contentType, 'application/x-coreml')
      assert.equal(r.data.cacheControl, 'max-age=120')
      assert.equal(r.data.etag, `"${crypto.createHash('md5').update(small).digest('hex')}"`)
      r = await files.exists('blob/m.bin')
      assert.equal(r.data, true)
      r = await files.exists('blob/none.bin')
      assert.equal(r.data, false)
    })

    await check('list a prefix', async () => {
      let r = await files.list('llama/v1')
      assert.equal(r.error, null, r.error?.message)
      assert.deepEqual(r.data.map((o) => o.name), ['model.gguf'])
      assert.equal(r.data[0].metadata.size, small.length)
      r = await files.list()
      assert.deepEqual(r.data.map((o) => [o.name, o.id === null]), [['blob', true], ['llama', true]])
    })

    await check('createSignedUrl + Range fetch (206), tampered path, expiry', async () => {
      const r = await files.createSignedUrl('llama/v1/model.gguf', 60)
      assert.equal(r.error, null, r.error?.message)
      assert.ok(r.data.signedUrl.startsWith(`${base}/object/sign/${bucket}/llama/v1/model.gguf?token=`))
      let res = await fetch(r.data.signedUrl, { headers: { Range: 'bytes=1000-1999' } })
      assert.equal(res.status, 206)
      assert.equal(res.headers.get('content-range'), `bytes 1000-1999/${small.length}`)
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(small.subarray(1000, 2000)))
      res = await fetch(r.data.signedUrl, { headers: { Range: `bytes=${small.length}-` } })
      assert.equal(res.status, 416)
      assert.equal((await res.json()).code, 'InvalidRange')
      res = await fetch(r.data.signedUrl.replace('model.gguf', 'other.gguf'))
      assert.equal(res.status, 400)
      assert.deepEqual(await res.json(), { statusCode: '400', code: 'InvalidSignature', error: 'InvalidSignature', message: 'Invalid signature' })
      const short = await files.createSignedUrl('llama/v1/model.gguf', 1)
      await new Promise((ok) => setTimeout(ok, 2100))
      res = await fetch(short.data.signedUrl)
      const body = await res.json()
      assert.equal(res.status, 400)
      assert.equal(body.code, 'InvalidJWT')
      assert.equal(body.message, '"exp" claim timestamp check failed')
      const missing = await files.createSignedUrl('nope.bin', 60)
      assertApiError(missing.error, '404', 'NoSuchKey')
    })

    await check('getPublicUrl on a public bucket (+ HEAD headers), private bucket refused', async () => {
      const pubFiles = storage.from(pub)
      assert.equal((await pubFiles.upload('dir/a b.txt', Buffer.from('public bytes'), { contentType: 'text/plain' })).error, null)
      const { data } = pubFiles.getPublicUrl('dir/a b.txt')
      let res = await fetch(data.publicUrl)
      assert.equal(res.status, 200)
      assert.equal(await res.text(), 'public bytes')
      res = await fetch(data.publicUrl, { method: 'HEAD' })
      assert.equal(res.headers.get('content-length'), '12')
      assert.equal(res.headers.get('content-type'), 'text/plain')
      assert.ok(res.headers.get('etag'))
      assert.ok(res.headers.get('last-modified'))
      res = await fetch(files.getPublicUrl('blob/m.bin').data.publicUrl)
      assert.equal(res.status, 400)
      assert.equal((await res.json()).statusCode, '404')
      // anon: reads the public bucket, cannot write, sees nothing private
      const anon = new StorageClient(base, { apikey: anonKey(), Authorization: `Bearer ${anonKey()}` })
      assert.equal(await (await anon.from(pub).download('dir/a b.txt')).data.text(), 'public bytes')
      assertApiError((await anon.from(pub).upload('x.txt', Buffer.from('x'))).error, '403', 'AccessDenied')
      assertApiError((await anon.from(bucket).download('blob/m.bin')).error, '404', 'NoSuchKey')
    })

    await check('raw error shape: missing object, bad key, traversal', async () => {
      let res = await fetch(`${base}/object/${bucket}/does/not/exist`, { headers: { Authorization: `Bearer ${key}` } })
      assert.equal(res.status, 400)
      assert.deepEqual(await res.json(), { statusCode: '404', code: 'NoSuchKey', error: 'not_found', message: 'Object not found' })
      res = await fetch(`${base}/object/${bucket}/x`)
      assert.equal(res.status, 400)
      let body = await res.json()
      assert.equal(body.statusCode, '403')
      assert.equal(body.code, 'AccessDenied')
      res = await fetch(`${base}/object/${bucket}/x`, { headers: { Authorization: `Bearer ${mintKey('--jwt-secret', 'wrong')}` } })
      assert.equal((await res.json()).message, 'signature verification failed')
      res = await fetch(`${base}/object/${bucket}/a/..%2F..%2Fetc`, { method: 'POST', body: 'x', headers: { Authorization: `Bearer ${key}` } })
      body = await res.json()
      assert.equal(res.status, 400)
      assert.equal(body.code, 'InvalidKey')
    })

    const big = path.join(tmp, 'big.bin')
    const bigSize = 13 * MiB + 12345
    fs.writeFileSync(big, crypto.randomBytes(bigSize))
    await check('tus-js-client: 6 MiB chunks, interrupted mid-way, resumed, byte for byte', async () => {
      const common = {
        endpoint: `${base}/upload/resumable`,
        headers: { authorization: `Bearer ${key}`, apikey: key, 'x-upsert': 'true' },
        metadata: { bucketName: bucket, objectName: 'tus/big.gguf', contentType: 'application/octet-stream', cacheControl: '3600' },
      }
      // First attempt: abort once the first chunk is stored (no more PATCHes are sent).
      let firstUrl
      await tusUpload(big, (get, resolve) => ({
        ...common,
        onChunkComplete: (_c, sent) => { if (sent >= 6 * MiB) { firstUrl = get().url; get().abort().then(resolve) } },
      }))
      assert.ok(firstUrl?.startsWith(`${base}/upload/resumable/`), firstUrl)
      let head = await fetch(firstUrl, { method: 'HEAD', headers: { authorization: `Bearer ${key}`, 'tus-resumable': '1.0.0' } })
      assert.equal(head.status, 200)
      assert.equal(Number(head.headers.get('upload-offset')), 6 * MiB)
      assert.equal(Number(head.headers.get('upload-length')), bigSize)
      // The object does not exist before the upload completes.
      assert.equal((await files.exists('tus/big.gguf')).data, false)
      // An out-of-date offset is refused with 409.
      const conflict = await fetch(firstUrl, { method: 'PATCH', body: 'x', headers: {
        authorization: `Bearer ${key}`, 'tus-resumable': '1.0.0', 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' } })
      assert.equal(conflict.status, 409)
      // Second attempt resumes from the stored upload URL (HEAD, then PATCH from 6 MiB).
      let resumedFrom = -1
      const up = await tusUpload(big, () => ({
        ...common, uploadUrl: firstUrl,
        onProgress: (sent) => { if (resumedFrom < 0) resumedFrom = sent },
      }))
      assert.equal(up.url, firstUrl)
      assert.ok(resumedFrom >= 6 * MiB, `resumed from ${resumedFrom}`)
      const r = await files.download('tus/big.gguf')
      assert.equal(r.error, null, r.error?.message)
      assert.ok(Buffer.from(await r.data.arrayBuffer()).equals(fs.readFileSync(big)), 'TUS object differs from source')
      // Without x-upsert a second resumable upload of the same key is refused (409, text).
      const dup = await fetch(`${base}/upload/resumable`, { method: 'POST', headers: {
        authorization: `Bearer ${key}`, 'tus-resumable': '1.0.0', 'upload-length': '1',
        'upload-metadata': `bucketName ${Buffer.from(bucket).toString('base64')},objectName ${Buffer.from('tus/big.gguf').toString('base64')}` } })
      assert.equal(dup.status, 409)
      assert.equal(await dup.text(), 'The resource already exists')
      // Termination of an unfinished upload (tus-js-client's Upload.terminate → DELETE).
      const created = await fetch(`${base}/upload/resumable`, { method: 'POST', headers: {
        authorization: `Bearer ${key}`, 'tus-resumable': '1.0.0', 'upload-length': '10',
        'upload-metadata': `bucketName ${Buffer.from(bucket).toString('base64')},objectName ${Buffer.from('tus/gone').toString('base64')}` } })
      assert.equal(created.status, 201)
      const loc = created.headers.get('location')
      await tus.Upload.terminate(loc, { headers: { authorization: `Bearer ${key}` } })
      head = await fetch(loc, { method: 'HEAD', headers: { authorization: `Bearer ${key}`, 'tus-resumable': '1.0.0' } })
      assert.equal(head.status, 404)
    })

    await check('tus-js-client: abort during a PATCH, resume, byte for byte', async () => {
      const common = {
        endpoint: `${base}/upload/resumable`,
        headers: { authorization: `Bearer ${key}` },
        metadata: { bucketName: bucket, objectName: 'tus/cut.gguf', contentType: 'application/octet-stream' },
      }
      let cutUrl
      await tusUpload(big, (get, resolve) => ({
        ...common,
        onProgress: (sent) => { if (!cutUrl && sent > 8 * MiB) { cutUrl = get().url; get().abort().then(resolve) } },
      }))
      // The bytes of the interrupted PATCH that reached the server are kept (as @tus/server does).
      const head = await fetch(cutUrl, { method: 'HEAD', headers: { authorization: `Bearer ${key}`, 'tus-resumable': '1.0.0' } })
      const offset = Number(head.headers.get('upload-offset'))
      assert.ok(offset >= 6 * MiB && offset < bigSize, `offset after the cut: ${offset}`)
      const up = await tusUpload(big, () => ({ ...common, uploadUrl: cutUrl }))
      assert.equal(up.url, cutUrl)
      const r = await files.download('tus/cut.gguf')
      assert.ok(Buffer.from(await r.data.arrayBuffer()).equals(fs.readFileSync(big)), 'TUS object differs from source')
    })

    await check('remove, emptyBucket, deleteBucket', async () => {
      let r = await storage.deleteBucket(bucket)
      assertApiError(r.error, '409', 'ResourceNotEmpty')
      r = await files.remove(['llama/v1/model.gguf', 'not/there'])
      assert.equal(r.error, null, r.error?.message)
      assert.deepEqual(r.data.map((o) => o.name), ['llama/v1/model.gguf'])
      assert.equal((await files.exists('llama/v1/model.gguf')).data, false)
      assert.equal((await storage.emptyBucket(bucket)).error, null)
      assert.equal((await storage.deleteBucket(bucket)).error, null)
      assertApiError((await storage.getBucket(bucket)).error, '404', 'NoSuchBucket')
    })
  } finally {
    child.removeAllListeners('exit')
    process.kill(child.pid, 'SIGTERM')
  }
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-standin-'))
const t0 = Date.now()
main(tmp)
  .then(() => { console.log(`all checks passed in ${((Date.now() - t0) / 1000).toFixed(1)} s`) })
  .catch((e) => { console.error(`FAILED in "${step}":`, e); process.exitCode = 1 })
  .finally(() => fs.rmSync(tmp, { recursive: true, force: true }))
