#!/usr/bin/env node
// Stand-in for the Supabase Storage REST API (/storage/v1), Node standard library only.
//
// Usage:
//   node supabase_standin.mjs --root DIR --port 0 --jwt-secret SECRET [--service-key JWT]
//        [--anon-key JWT] [--max-standard-upload-bytes N] [--max-resumable-upload-bytes N]
//   node supabase_standin.mjs --print-service-key --jwt-secret SECRET   (prints an HS256
//        service_role JWT and exits; tests mint their key this way)
//
// Prints `LISTENING <port>` once listening on 127.0.0.1; exits on SIGTERM/SIGINT.
// Any HS256 JWT signed with --jwt-secret is accepted, as the real server does: role
// "service_role" bypasses row-level security; any other role behaves as if the only policy
// were "anyone may read objects of public buckets". --service-key/--anon-key are only
// checked at startup to verify with --jwt-secret (the real server has no list of keys).
//
// Behaviour mirrors supabase/storage (error codes and messages, the HTTP 400 for every
// 4xx with the real status as a *string* in the body, Range parsing, TUS via @tus/server).
// Layout under --root: buckets.json, meta/<sha>.json + data/<sha> per object, tus/<sha>.json
// + tus/<sha>.part per resumable upload, tmp/ for in-flight standard uploads.

import http from 'node:http'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import crypto from 'node:crypto'

// ---------------------------------------------------------------- arguments
function parseArgs(argv) {
  const o = {
    root: '', port: 0, jwtSecret: '', printServiceKey: false,
    maxStandard: 50 * 1024 * 1024, // the hosted free tier's global upload limit (50 MB)
    maxResumable: 500 * 1024 ** 3, // the largest per-file limit hosted projects can set
  }
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i], v = () => argv[++i]
    if (a === '--root') o.root = v()
    else if (a === '--port') o.port = Number(v())
    else if (a === '--jwt-secret') o.jwtSecret = v()
    else if (a === '--service-key' || a === '--anon-key') (o.keys ||= []).push(v())
    else if (a === '--max-standard-upload-bytes') o.maxStandard = Number(v())
    else if (a === '--max-resumable-upload-bytes') o.maxResumable = Number(v())
    else if (a === '--print-service-key') o.printServiceKey = true
    else throw new Error(`unknown argument ${a}`)
  }
  if (!o.jwtSecret) throw new Error('--jwt-secret is required')
  if (!o.printServiceKey && !o.root) throw new Error('--root is required')
  return o
}

// ---------------------------------------------------------------- HS256 JWT
const b64u = (b) => Buffer.from(b).toString('base64url')
function signJwt(payload, secret) {
  const head = b64u(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))
  const body = b64u(JSON.stringify(payload))
  const sig = crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url')
  return `${head}.${body}.${sig}`
}
// Throws with the messages of `jose` (the library the real server verifies with), because
// those messages end up verbatim in the error bodies clients see.
function verifyJwt(token, secret) {
  const parts = String(token || '').split('.')
  if (parts.length !== 3) throw new Error('Invalid Compact JWS')
  let header, payload
  try {
    header = JSON.parse(Buffer.from(parts[0], 'base64url'))
    payload = JSON.parse(Buffer.from(parts[1], 'base64url'))
  } catch { throw new Error('Invalid Compact JWS') }
  if (header.alg !== 'HS256') throw new Error('"alg" (Algorithm) Header Parameter value not allowed')
  const want = crypto.createHmac('sha256', secret).update(`${parts[0]}.${parts[1]}`).digest()
  const got = Buffer.from(parts[2], 'base64url')
  if (got.length !== want.length || !crypto.timingSafeEqual(got, want))
    throw new Error('signature verification failed')
  if (typeof payload.exp === 'number' && payload.exp <= Math.floor(Date.now() / 1000))
    throw new Error('"exp" claim timestamp check failed')
  return payload
}

// ---------------------------------------------------------------- errors
// Mirrors StorageBackendError: the body carries the real status as a string; the HTTP
// status is 400 for everything but 500, unless the real code overrides it (Range: 416).
class StorageError extends Error {
  constructor(status, code, message, error, httpOverride) {
    super(message)
    Object.assign(this, { status, code, error: error || code, httpOverride })
  }
}
const E = {
  noSuchKey: () => new StorageError(404, 'NoSuchKey', 'Object not found', 'not_found'),
  noSuchBucket: () => new StorageError(404, 'NoSuchBucket', 'Bucket not found', 'Bucket not found'),
  keyExists: () => new StorageError(409, 'KeyAlreadyExists', 'The resource already exists', 'Duplicate'),
  bucketExists: () => new StorageError(409, 'BucketAlreadyExists', 'The resource already exists', 'Duplicate'),
  bucketNotEmpty: () => new StorageError(409, 'ResourceNotEmpty', 'The bucket you tried to delete is not empty'),
  accessDenied: (msg) => new StorageError(403, 'AccessDenied', msg || 'Access denied', 'Unauthorized'),
  rls: () => E.accessDenied('new row violates row-level security policy'),
  invalidJwt: (msg) => new StorageError(400, 'InvalidJWT', msg || 'Invalid JWT'),
  invalidSignature: (msg) => new StorageError(400, 'InvalidSignature', msg || 'Invalid signature'),
  tooLarge: () => new StorageError(413, 'EntityTooLarge', 'The object exceeded the maximum allowed size', 'Payload too large'),
  invalidKey: (k) => new StorageError(400, 'InvalidKey', `Invalid key: ${k}`),
  invalidBucketName: () => new StorageError(400, 'InvalidBucketName', 'Bucket name invalid', 'Invalid Input'),
  invalidRange: () => new StorageError(416, 'InvalidRange', 'invalid range provided', 'invalid_range', 416),
  invalidParameter: (p) => new StorageError(400, 'InvalidParameter', `Invalid Parameter ${p}`),
  noContent: () => new StorageError(400, 'InvalidRequest', 'No content provided'),
  metadataRequired: () => new StorageError(400, 'InvalidRequest', 'Metadata header is required'),
  // Fastify's own not-found handler for unknown routes (a real 404, JSON body).
  noRoute: (req) => new StorageError(404, 'InvalidRequest', `Route ${req.method}:${req.url} not found`, 'Not Found', 404),
}
function sendError(res, err) {
  if (!(err instanceof StorageError)) {
    console.error(err)
    err = new StorageError(500, 'InternalError', 'Internal server error', 'Internal')
  }
  if (res.headersSent) { res.destroy(); return }
  const status = err.httpOverride || (err.status === 500 ? 500 : 400)
  sendJson(res, status, { statusCode: String(err.status), code: err.code, error: err.error, message: err.message })
}
function sendJson(res, status, obj, headers = {}) {
  const body = Buffer.from(JSON.stringify(obj))
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': body.length, ...headers })
  res.end(res.req.method === 'HEAD' ? undefined : body)
}

// ---------------------------------------------------------------- validation
// Same character classes as the real server's isValidKey/isValidBucketName (S3-safe set).
const VALID_KEY = /^[A-Za-z0-9_/!.*'() &$=@;:+,?-]*$/
const VALID_BUCKET = /^[A-Za-z0-9_!.*'() &$=@;:+,?-]*$/
function checkKey(key) {
  // The real server passes ".." through to S3 as a literal key; a disk-backed stand-in
  // refuses it outright (the real file backend refuses escaping paths too).
  if (!key || !VALID_KEY.test(key) || key.split('/').some((s) => s === '..' || s === '.'))
    throw E.invalidKey(key || '')
}
function checkBucketName(name) {
  if (!name || name.length > 100 || !VALID_BUCKET.test(name)) throw E.invalidBucketName()
}

// Bucket file_size_limit may be a number or a string such as "20MB" (storage-js allows both).
function parseSize(v) {
  if (v === null || v === undefined || v === '') return 0
  const m = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB)?$/i.exec(String(v))
  if (!m) throw new StorageError(400, 'InvalidRequest', 'Invalid file size format, hint: use 20GB / 20MB / 30KB / 3B')
  return Math.floor(Number(m[1]) * 1024 ** ['B', 'KB', 'MB', 'GB'].indexOf((m[2] || 'B').toUpperCase()))
}

// ---------------------------------------------------------------- store
class Store {
  constructor(root) {
    this.root = path.resolve(root)
    for (const d of ['meta', 'data', 'tus', 'tmp']) fs.mkdirSync(path.join(this.root, d), { recursive: true })
    this.bucketsFile = path.join(this.root, 'buckets.json')
    this.buckets = new Map(Object.entries(readJson(this.bucketsFile) || {}))
    this.objects = new Map() // `${bucket}/${name}` -> row
    for (const f of fs.readdirSync(path.join(this.root, 'meta'))) {
      const row = readJson(path.join(this.root, 'meta', f))
      if (row) this.objects.set(`${row.bucket_id}/${row.name}`, row)
    }
  }
  // File names are hashes, so no key can ever name a path outside --root.
  hash(s) { return crypto.createHash('sha256').update(s).digest('hex') }
  dataPath(b, n) { return path.join(this.root, 'data', this.hash(`${b}/${n}`)) }
  metaPath(b, n) { return path.join(this.root, 'meta', this.hash(`${b}/${n}.json`)) }
  tmpPath() { return path.join(this.root, 'tmp', crypto.randomUUID()) }
  tusPath(id, ext) { return path.join(this.root, 'tus', this.hash(id) + ext) }
  saveBuckets() { writeJsonAtomic(this.bucketsFile, Object.fromEntries(this.buckets)) }
  bucket(id) { const b = this.buckets.get(id); if (!b) throw E.noSuchBucket(); return b }
  object(b, n) { const o = this.objects.get(`${b}/${n}`); if (!o) throw E.noSuchKey(); return o }
  // Moves a finished temp file into place and records the row, keeping id/created_at on
  // overwrite (the real upsert updates the existing row and gives it a new version).
  commit(bucket, name, tmp, { size, mimetype, cacheControl, eTag, userMetadata, owner }) {
    const prev = this.objects.get(`${bucket}/${name}`)
    const now = new Date().toISOString()
    fs.renameSync(tmp, this.dataPath(bucket, name))
    const row = {
      id: prev?.id || crypto.randomUUID(), bucket_id: bucket, name, owner: owner || null,
      owner_id: owner || null, version: crypto.randomUUID(),
      created_at: prev?.created_at || now, updated_at: now, last_accessed_at: now,
      metadata: { eTag, size, mimetype, cacheControl, lastModified: new Date().toUTCString(), contentLength: size, httpStatusCode: 200 },
      user_metadata: userMetadata ?? null,
    }
    writeJsonAtomic(this.metaPath(bucket, name), row)
    this.objects.set(`${bucket}/${name}`, row)
    return row
  }
  remove(bucket, name) {
    const row = this.objects.get(`${bucket}/${name}`)
    if (!row) return null
    this.objects.delete(`${bucket}/${name}`)
    fs.rmSync(this.metaPath(bucket, name), { force: true })
    fs.rmSync(this.dataPath(bucket, name), { force: true })
    return row
  }
  rowsIn(bucket) { return [...this.objects.values()].filter((r) => r.bucket_id === bucket) }
}
function readJson(f) { try { return JSON.parse(fs.readFileSync(f, 'utf8')) } catch { return null } }
function writeJsonAtomic(f, obj) {
  const tmp = `${f}.${process.pid}.${crypto.randomUUID()}`
  fs.writeFileSync(tmp, JSON.stringify(obj))
  fs.renameSync(tmp, f)
}

// One async lock per TUS upload: @tus/server also serialises requests on an upload, so a
// HEAD after an interrupted PATCH sees the bytes that PATCH managed to store.
const locks = new Map()
async function withLock(key, fn) {
  const prev = locks.get(key) || Promise.resolve()
  let release
  const mine = new Promise((r) => (release = r))
  const chain = prev.then(() => mine)
  locks.set(key, chain)
  await prev
  try { return await fn() } finally {
    release()
    if (locks.get(key) === chain) locks.delete(key)
  }
}

// ---------------------------------------------------------------- body helpers
async function readJsonBody(req, max = 1 << 20) {
  const chunks = []
  let n = 0
  for await (const c of req) { n += c.length; if (n > max) throw E.tooLarge(); chunks.push(c) }
  if (!n) return {}
  try { return JSON.parse(Buffer.concat(chunks).toString('utf8')) } catch {
    throw new StorageError(400, 'InvalidRequest', 'Body is not valid JSON', 'Bad Request')
  }
}
// Streams chunks into `file` (append when asked), hashing what is written, and stops
// reading once more than `limit` bytes arrive. Never throws for a client that hangs up or
// sends too much: it reports {size, md5, overflow, aborted} and the caller decides
// (a standard upload discards the file; a TUS PATCH keeps what arrived, as @tus/server does).
async function streamToFile(chunks, file, limit, flags = 'w') {
  const out = fs.createWriteStream(file, { flags })
  const md5 = crypto.createHash('md5')
  const closed = new Promise((res, rej) => { out.on('close', res); out.on('error', rej) })
  let size = 0, overflow = false, aborted = false
  try {
    for await (const c of chunks) {
      if (size + c.length > limit) { overflow = true; break }
      size += c.length
      md5.update(c)
      if (!out.write(c)) await new Promise((r) => out.once('drain', r))
    }
  } catch (e) {
    if (e instanceof StorageError) { out.end(); await closed; throw e }
    aborted = true // 'aborted' / ECONNRESET from the request stream
  }
  out.end()
  await closed
  return { size, md5: md5.digest('hex'), overflow, aborted }
}
// Minimal streaming multipart/form-data reader: small fields are collected, the first file
// part is yielded chunk by chunk (like @fastify/multipart's request.file(), which the real
// server uses; fields sent after the file are not seen, as there).
async function* multipartFile(req, boundary, fields) {
  const delim = Buffer.from(`\r\n--${boundary}`)
  let buf = Buffer.from('\r\n'), state = 'preamble', part = null
  const it = req[Symbol.asyncIterator]()
  for (;;) {
    let progressed = true
    while (progressed) {
      progressed = false
      if (state === 'preamble' || state === 'body') {
        const i = buf.indexOf(delim)
        const keep = i >= 0 ? i : Math.max(0, buf.length - delim.length + 1)
        if (state === 'body' && keep > 0) {
          if (part.file) yield buf.subarray(0, keep)
          else part.value.push(buf.subarray(0, keep))
        }
        buf = buf.subarray(i >= 0 ? i + delim.length : keep)
        if (i >= 0) {
          if (state === 'body' && part.file) return
          if (state === 'body') fields[part.name] = Buffer.concat(part.value).toString('utf8')
          state = 'after'; progressed = true
        }
      } else if (state === 'after' && buf.length >= 2) {
        if (buf[0] === 0x2d && buf[1] === 0x2d) return // closing delimiter, no file part
        buf = buf.subarray(2); state = 'headers'; progressed = true
      } else if (state === 'headers') {
        const i = buf.indexOf('\r\n\r\n')
        if (i < 0) break
        const head = buf.subarray(0, i).toString('utf8')
        buf = buf.subarray(i + 4)
        const disp = /content-disposition:[^\r\n]*/i.exec(head)?.[0] || ''
        const name = /\bname="([^"]*)"/i.exec(disp)?.[1] ?? ''
        const file = /\bfilename="/i.test(disp)
        part = { name, file, value: [] }
        if (file) fields.__mimetype = /content-type:\s*([^\r\n]+)/i.exec(head)?.[1]?.trim()
        state = 'body'; progressed = true
      }
    }
    const { value, done } = await it.next()
    if (done) throw E.noContent() // body ended before the file part was complete
    buf = buf.length ? Buffer.concat([buf, value]) : value
  }
}

// ---------------------------------------------------------------- auth
function authenticate(req, secret) {
  // The storage server itself reads only Authorization; the API gateway in front also takes
  // the `apikey` header, so a lone apikey is treated as the bearer token.
  const auth = req.headers.authorization || (req.headers.apikey ? `Bearer ${req.headers.apikey}` : '')
  const token = auth.replace(/^Bearer\s+/i, '')
  try { return verifyJwt(token, secret) } catch (e) { throw E.accessDenied(e.message) }
}
const isService = (claims) => claims?.role === 'service_role'
// Reads are allowed to service_role, and to others only in public buckets; for everybody
// else the row is invisible, which the real server reports as "not found".
function readableObject(store, claims, bucket, name) {
  const b = store.buckets.get(bucket)
  if (!isService(claims) && !b?.public) throw E.noSuchKey()
  return store.object(bucket, name)
}

// ---------------------------------------------------------------- object responses
// Same grammar as the real parseRangeHeader: one range, suffix ranges, end clamped.
function parseRange(h, size) {
  const m = /^bytes=(\d*)-(\d*)$/.exec(h)
  if (!m || size <= 0 || (!m[1] && !m[2])) throw E.invalidRange()
  if (!m[1]) {
    const n = Number(m[2])
    if (!Number.isSafeInteger(n) || n <= 0) throw E.invalidRange()
    return [Math.max(size - n, 0), size - 1]
  }
  const from = Number(m[1]), to = m[2] ? Number(m[2]) : size - 1
  if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || to < from || from >= size) throw E.invalidRange()
  return [from, Math.min(to, size - 1)]
}
function sendObject(req, res, store, row, { download, expires } = {}) {
  const md = row.metadata
  const file = store.dataPath(row.bucket_id, row.name)
  const headers = {
    'Accept-Ranges': 'bytes', 'Content-Type': md.mimetype || 'application/octet-stream',
    ETag: md.eTag, 'X-Robots-Tag': 'none', 'Last-Modified': md.lastModified,
  }
  // Signed URLs answer with Expires instead of Cache-Control, like the real renderer.
  if (expires) headers.Expires = expires
  else if (md.cacheControl) headers['Cache-Control'] = md.cacheControl
  if (download !== undefined) {
    const f = encodeURIComponent(download)
    headers['Content-Disposition'] = download === '' ? 'attachment;' : `attachment; filename=${f}; filename*=UTF-8''${f}`
  }
  const inm = req.headers['if-none-match'], ims = req.headers['if-modified-since']
  if ((inm && inm === md.eTag) || (ims && new Date(md.lastModified) <= new Date(ims))) {
    res.writeHead(304, headers); return res.end()
  }
  let status = 200, start = 0, end = md.size - 1
  if (req.headers.range) {
    ;[start, end] = parseRange(req.headers.range, md.size)
    status = 206
    headers['Content-Range'] = `bytes ${start}-${end}/${md.size}`
  }
  headers['Content-Length'] = md.size === 0 ? 0 : end - start + 1
  res.writeHead(status, headers)
  if (req.method === 'HEAD' || md.size === 0) return res.end()
  const rs = fs.createReadStream(file, { start, end })
  rs.on('error', () => res.destroy())
  rs.pipe(res)
}
function infoBody(row) {
  const md = row.metadata
  return {
    id: row.id, name: row.name, version: row.version, bucket_id: row.bucket_id, size: md.size,
    content_type: md.mimetype, cache_control: md.cacheControl, etag: md.eTag,
    metadata: row.user_metadata, last_modified: row.updated_at, created_at: row.created_at,
  }
}
const listRow = (r, name) => ({
  name, id: r.id, updated_at: r.updated_at, created_at: r.created_at,
  last_accessed_at: r.last_accessed_at, metadata: r.metadata,
})

// ---------------------------------------------------------------- standard upload
async function upload(ctx, bucket, name, upsert) {
  const { req, store, opts, claims } = ctx
  checkKey(name)
  const b = store.bucket(bucket)
  if (!isService(claims)) throw E.rls()
  // canUpload runs before any byte is read: a non-upsert onto an existing key fails fast.
  if (!upsert && store.objects.has(`${bucket}/${name}`)) throw E.keyExists()
  const limit = Math.min(opts.maxStandard, parseSize(b.file_size_limit) || Infinity)
  const ct = req.headers['content-type'] || ''
  const tmp = store.tmpPath()
  let mimetype, cacheControl, userMetadata, written
  try {
    if (ct.startsWith('multipart/form-data')) {
      const boundary = /boundary="?([^";]+)"?/i.exec(ct)?.[1]
      if (!boundary) throw E.noContent()
      const fields = {}
      written = await streamToFile(multipartFile(req, boundary, fields), tmp, limit)
      mimetype = fields.contentType || fields.__mimetype || 'application/octet-stream'
      cacheControl = fields.cacheControl ? `max-age=${fields.cacheControl}` : 'no-cache'
      try { userMetadata = fields.metadata ? JSON.parse(fields.metadata) : undefined } catch {}
    } else {
      const declared = Number(req.headers['content-length'])
      if (Number.isFinite(declared) && declared > limit) throw E.tooLarge()
      mimetype = ct || 'application/octet-stream'
      cacheControl = req.headers['cache-control'] ?? 'no-cache'
      if (req.headers['x-metadata']) {
        try { userMetadata = JSON.parse(Buffer.from(req.headers['x-metadata'], 'base64').toString('utf8')) } catch {}
      }
      written = await streamToFile(req, tmp, limit)
      if (Number.isFinite(declared) && written.size !== declared && !written.overflow) written.aborted = true
    }
    if (written.overflow) throw E.tooLarge()
    if (written.aborted) throw E.noContent()
    if (!upsert && store.objects.has(`${bucket}/${name}`)) throw E.keyExists()
    const row = store.commit(bucket, name, tmp, {
      size: written.size, mimetype, cacheControl, eTag: `"${written.md5}"`, userMetadata, owner: claims.sub,
    })
    return { Id: row.id, Key: `${bucket}/${name}` }
  } finally {
    fs.rmSync(tmp, { force: true })
  }
}

// ---------------------------------------------------------------- REST routes
async function restRoute(ctx, method, p) {
  const { req, res, store, opts } = ctx
  const seg = p.split('/')
  const rest = (n) => seg.slice(n).join('/')
  const auth = () => (ctx.claims = authenticate(req, opts.jwtSecret))
  const svc = () => { if (!isService(ctx.claims)) throw E.rls() }
  const q = ctx.url.searchParams
  // Fastify exposes a HEAD route for every GET route.
  const isGet = method === 'GET' || method === 'HEAD'
  const download = q.has('download') ? q.get('download') : undefined

  if (seg[0] === 'bucket') {
    auth()
    const id = seg[1]
    if (method === 'GET' && seg.length === 1) {
      return sendJson(res, 200, isService(ctx.claims) ? [...store.buckets.values()] : [])
    }
    if (method === 'POST' && seg.length === 1) {
      svc()
      const body = await readJsonBody(req)
      const bid = body.id || body.name
      checkBucketName(bid)
      parseSize(body.file_size_limit)
      if (store.buckets.has(bid)) throw E.bucketExists()
      const now = new Date().toISOString()
      store.buckets.set(bid, {
        id: bid, name: body.name || bid, owner: ctx.claims.sub || '', public: !!body.public,
        type: body.type || 'STANDARD', file_size_limit: body.file_size_limit ?? null,
        allowed_mime_types: body.allowed_mime_types ?? null, created_at: now, updated_at: now,
      })
      store.saveBuckets()
      return sendJson(res, 200, { name: body.name || bid })
    }
    if (seg.length === 2 && method === 'GET') {
      if (!isService(ctx.claims)) throw E.noSuchBucket()
      return sendJson(res, 200, store.bucket(id))
    }
    if (seg.length === 2 && method === 'PUT') {
      svc()
      const body = await readJsonBody(req), b = store.bucket(id)
      if (body.public !== undefined) b.public = !!body.public
      if (body.file_size_limit !== undefined) b.file_size_limit = body.file_size_limit
      if (body.allowed_mime_types !== undefined) b.allowed_mime_types = body.allowed_mime_types
      b.updated_at = new Date().toISOString()
      store.saveBuckets()
      return sendJson(res, 200, { message: 'Successfully updated' })
    }
    if (seg.length === 2 && method === 'DELETE') {
      svc()
      store.bucket(id)
      if (store.rowsIn(id).length) throw E.bucketNotEmpty()
      store.buckets.delete(id)
      store.saveBuckets()
      return sendJson(res, 200, { message: 'Successfully deleted' })
    }
    if (seg.length === 3 && seg[2] === 'empty' && method === 'POST') {
      svc()
      store.bucket(id)
      for (const r of store.rowsIn(id)) store.remove(id, r.name)
      return sendJson(res, 200, { message: 'Empty bucket has been queued. Completion may take up to an hour.' })
    }
    throw E.noRoute(req)
  }
  if (seg[0] !== 'object' || seg.length < 2) throw E.noRoute(req)

  const sub = seg[1]
  // Unauthenticated routes: public objects and signed URLs.
  if (sub === 'public' && isGet) {
    const bucket = seg[2], name = rest(3)
    const b = store.buckets.get(bucket)
    if (!b || !b.public) throw E.noSuchBucket()
    return sendObject(req, res, store, store.object(bucket, name), { download })
  }
  if (sub === 'info' && seg[2] === 'public' && isGet) {
    const b = store.buckets.get(seg[3])
    if (!b || !b.public) throw E.noSuchBucket()
    return sendJson(res, 200, infoBody(store.object(seg[3], rest(4))))
  }
  if (sub === 'sign' && isGet) {
    const bucket = seg[2], name = rest(3)
    let claims
    try { claims = verifyJwt(q.get('token') || '', opts.jwtSecret) } catch (e) { throw E.invalidJwt(e.message) }
    if (!(claims.scope === 'download' || (claims.scope === undefined && !('upsert' in claims))))
      throw E.invalidSignature('Token is not scoped for download')
    if (claims.url !== `${bucket}/${name}`) throw E.invalidSignature()
    const row = store.object(bucket, name)
    return sendObject(req, res, store, row, { download, expires: new Date(claims.exp * 1000).toUTCString() })
  }

  auth()
  if (sub === 'sign' && method === 'POST') {
    const bucket = seg[2], body = await readJsonBody(req)
    const exp = Number(body.expiresIn)
    if (!Number.isFinite(exp) || exp <= 0) throw E.invalidParameter('expiresIn')
    const iat = Math.floor(Date.now() / 1000)
    const token = (url) => signJwt({ url, scope: 'download', iat, exp: iat + Math.floor(exp) }, opts.jwtSecret)
    if (seg.length === 3) { // createSignedUrls: { paths: [...] }
      const paths = Array.isArray(body.paths) ? body.paths : []
      return sendJson(res, 200, paths.map((p2) => {
        const ok = store.objects.has(`${bucket}/${p2}`) && (isService(ctx.claims) || store.buckets.get(bucket)?.public)
        return ok
          ? { error: null, path: p2, signedURL: `/object/sign/${bucket}/${p2}?token=${token(`${bucket}/${p2}`)}` }
          : { error: 'Either the object does not exist or you do not have access to it', path: p2, signedURL: null }
      }))
    }
    readableObject(store, ctx.claims, bucket, rest(3))
    const url = `${bucket}/${rest(3)}`
    return sendJson(res, 200, { signedURL: `/object/sign/${url}?token=${token(url)}` })
  }
  if (sub === 'list' && method === 'POST') return listObjects(ctx, seg[2], await readJsonBody(req))
  if (sub === 'info' && isGet) {
    const off = seg[2] === 'authenticated' ? 3 : 2
    return sendJson(res, 200, infoBody(readableObject(store, ctx.claims, seg[off], rest(off + 1))))
  }
  if ((sub === 'move' || sub === 'copy') && method === 'POST' && seg.length === 2) {
    return moveOrCopy(ctx, sub, await readJsonBody(req))
  }
  if (sub === 'authenticated' && isGet) {
    return sendObject(req, res, store, readableObject(store, ctx.claims, seg[2], rest(3)), { download })
  }
  const bucket = sub, name = rest(2)
  if (isGet) {
    if (!name) throw E.noRoute(req)
    return sendObject(req, res, store, readableObject(store, ctx.claims, bucket, name), { download })
  }
  if (method === 'POST' && name) return sendJson(res, 200, await upload(ctx, bucket, name, req.headers['x-upsert'] === 'true'))
  if (method === 'PUT' && name) return sendJson(res, 200, await upload(ctx, bucket, name, true))
  if (method === 'DELETE' && !name) {
    const body = await readJsonBody(req)
    if (!Array.isArray(body.prefixes) || body.prefixes.length < 1) throw E.invalidParameter('prefixes')
    // RETURNING * of the deleted rows; rows the caller cannot see are simply not deleted.
    const gone = isService(ctx.claims) ? body.prefixes.map((n) => store.remove(bucket, n)).filter(Boolean) : []
    return sendJson(res, 200, gone)
  }
  if (method === 'DELETE') {
    if (!isService(ctx.claims)) throw E.noSuchKey()
    store.object(bucket, name)
    store.remove(bucket, name)
    return sendJson(res, 200, { message: 'Successfully deleted' })
  }
  throw E.noRoute(req)
}

// storage.search(): the direct children of `prefix` (a folder), folders as rows with null
// ids, case-insensitive name-prefix `search`, sorted, then offset/limit.
function listObjects({ res, store, claims }, bucket, body) {
  let prefix = body.prefix || ''
  if (prefix && !prefix.endsWith('/')) prefix += '/'
  const visible = isService(claims) || store.buckets.get(bucket)?.public
  const search = String(body.search || '').toLowerCase()
  const files = [], folders = new Set()
  for (const r of visible ? store.rowsIn(bucket) : []) {
    if (!r.name.startsWith(prefix)) continue
    const tail = r.name.slice(prefix.length)
    if (!tail.toLowerCase().startsWith(search)) continue
    const slash = tail.indexOf('/')
    if (slash >= 0) folders.add(tail.slice(0, slash))
    else files.push(listRow(r, tail))
  }
  const nullRow = (name) => ({ name, id: null, updated_at: null, created_at: null, last_accessed_at: null, metadata: null })
  const all = [...[...folders].map(nullRow), ...files]
  const col = body.sortBy?.column || 'name', desc = String(body.sortBy?.order).toLowerCase() === 'desc'
  all.sort((a, b) => ((a[col] ?? '') < (b[col] ?? '') ? -1 : (a[col] ?? '') > (b[col] ?? '') ? 1 : 0) * (desc ? -1 : 1))
  const offset = Number(body.offset) || 0, limit = Number(body.limit) || 100
  return sendJson(res, 200, all.slice(offset, offset + limit))
}

function moveOrCopy({ res, store, claims }, op, body) {
  if (!isService(claims)) throw E.rls()
  const from = body.bucketId, to = body.destinationBucket || body.bucketId
  checkKey(body.destinationKey)
  store.bucket(to)
  const src = store.object(from, body.sourceKey)
  const tmp = store.tmpPath()
  fs.copyFileSync(store.dataPath(from, src.name), tmp)
  const md = src.metadata
  const row = store.commit(to, body.destinationKey, tmp, {
    size: md.size, mimetype: md.mimetype, cacheControl: md.cacheControl, eTag: md.eTag,
    userMetadata: src.user_metadata, owner: claims.sub,
  })
  if (op === 'move') { store.remove(from, src.name); return sendJson(res, 200, { message: 'Successfully moved' }) }
  return sendJson(res, 200, { Id: row.id, Key: `${to}/${body.destinationKey}` })
}

// ---------------------------------------------------------------- TUS (resumable)
// @tus/server answers errors with their real status and a plain-text body (the message),
// not the JSON shape; Supabase's hooks convert storage errors the same way.
function tusReply(res, status, headers = {}, body = '') {
  res.writeHead(status, { 'Tus-Resumable': '1.0.0', 'Cache-Control': 'no-store', ...headers })
  res.end(body)
}
function tusFail(res, err) {
  if (err instanceof StorageError) return tusReply(res, err.status, { 'Content-Type': 'text/plain' }, err.message)
  console.error(err)
  return tusReply(res, 500, {}, 'Something went wrong with that request\n')
}
function parseUploadMetadata(h) {
  const md = {}
  for (const pair of String(h || '').split(',')) {
    const [k, v] = pair.trim().split(' ')
    if (!k) continue
    md[k] = v === undefined ? '' : Buffer.from(v, 'base64').toString('utf8')
  }
  return md
}

async function tusRoute(ctx, method, id) {
  const { req, res, store, opts } = ctx
  if (method === 'OPTIONS') {
    return tusReply(res, 204, {
      'Tus-Version': '1.0.0', 'Tus-Max-Size': String(opts.maxResumable),
      'Tus-Extension': 'creation,creation-with-upload,termination,creation-defer-length,expiration',
    })
  }
  ctx.claims = authenticate(req, opts.jwtSecret) // JSON 400 error, like the fastify hook
  if (req.headers['tus-resumable'] !== '1.0.0') return tusReply(res, 412, { 'Tus-Version': '1.0.0' }, 'Unsupported version\n')
  try {
    if (method === 'POST' && !id) return await tusCreate(ctx)
    if (!id) return tusReply(res, 404, {}, 'Not found\n')
    return await withLock(id, async () => {
      const up = readJson(store.tusPath(id, '.json'))
      if (!up) return tusReply(res, 404, {}, 'The file for this url was not found\n')
      if (method === 'HEAD') {
        return tusReply(res, 200, {
          'Upload-Offset': String(up.offset), 'Upload-Length': String(up.size),
          'Upload-Metadata': up.rawMetadata, 'Upload-Expires': new Date(up.expires).toUTCString(),
        })
      }
      if (method === 'PATCH') return await tusPatch(ctx, id, up)
      if (method === 'DELETE') {
        if (up.done) return tusReply(res, 400, {}, 'Cannot terminate an already completed upload')
        fs.rmSync(store.tusPath(id, '.part'), { force: true })
        fs.rmSync(store.tusPath(id, '.json'), { force: true })
        return tusReply(res, 204)
      }
      return tusReply(res, 404, {}, 'Not found\n')
    })
  } catch (e) { return tusFail(res, e) }
}

async function tusCreate(ctx) {
  const { req, res, store, opts, claims } = ctx
  const size = Number(req.headers['upload-length'])
  if (req.headers['upload-length'] === undefined || !Number.isSafeInteger(size) || size < 0)
    return tusReply(res, 400, {}, 'Upload-Length or Upload-Defer-Length header required\n')
  if (size > opts.maxResumable) return tusReply(res, 413, {}, 'Maximum size exceeded\n')
  if (!req.headers['upload-metadata']) throw E.metadataRequired()
  const md = parseUploadMetadata(req.headers['upload-metadata'])
  const bucket = md.bucketName || '', name = md.objectName || ''
  checkBucketName(bucket)
  checkKey(name)
  const b = store.bucket(bucket)
  if (parseSize(b.file_size_limit) && size > parseSize(b.file_size_limit)) return tusReply(res, 413, {}, 'Maximum size exceeded\n')
  if (!isService(claims)) throw E.rls()
  const upsert = req.headers['x-upsert'] === 'true'
  if (!upsert && store.objects.has(`${bucket}/${name}`)) throw E.keyExists()
  // The upload id is base64url("bucket/object/version"), as in Supabase's generateUrl.
  const id = Buffer.from(`${bucket}/${name}/${crypto.randomUUID()}`).toString('base64url')
  const up = {
    bucket, name, size, offset: 0, parts: [], upsert, owner: claims.sub || null,
    rawMetadata: req.headers['upload-metadata'],
    contentType: md.contentType || 'application/octet-stream',
    // onCreate: a numeric cacheControl becomes max-age=N, anything else no-cache.
    cacheControl: /^-?\d+$/.test(md.cacheControl || '') ? `max-age=${md.cacheControl}` : 'no-cache',
    userMetadata: (() => { try { return md.metadata ? JSON.parse(md.metadata) : undefined } catch { return undefined } })(),
    expires: Date.now() + 24 * 3600 * 1000, done: false,
  }
  fs.writeFileSync(store.tusPath(id, '.part'), '')
  writeJsonAtomic(store.tusPath(id, '.json'), up)
  const location = `http://${req.headers.host}/storage/v1/upload/resumable/${id}`
  const headers = { Location: location, 'Upload-Expires': new Date(up.expires).toUTCString() }
  if (req.headers['content-type'] === 'application/offset+octet-stream') {
    // creation-with-upload: the POST body is the first chunk.
    return withLock(id, () => tusPatch(ctx, id, up, 201, headers))
  }
  return tusReply(res, 201, headers)
}

async function tusPatch(ctx, id, up, okStatus = 204, extra = {}) {
  const { req, res, store } = ctx
  if (req.headers['content-type'] !== 'application/offset+octet-stream')
    return tusReply(res, 415, {}, 'Content-Type header required\n')
  const offset = okStatus === 201 ? 0 : Number(req.headers['upload-offset'])
  if (okStatus !== 201 && req.headers['upload-offset'] === undefined) return tusReply(res, 403, {}, 'Upload-Offset header required\n')
  if (up.done || offset !== up.offset) return tusReply(res, 409, {}, 'Upload-Offset conflict\n')
  const part = store.tusPath(id, '.part')
  const got = await streamToFile(req, part, up.size - up.offset, 'a')
  // Keep exactly what reached the disk, also after an interrupted PATCH. Each PATCH is one
  // S3 part on the hosted service; remember its MD5 for the multipart-style final ETag.
  up.offset = fs.statSync(part).size
  if (got.size) up.parts.push(got.md5)
  if (got.overflow) {
    writeJsonAtomic(store.tusPath(id, '.json'), up)
    return tusReply(res, 413, {}, "upload's size exceeded\n")
  }
  if (up.offset === up.size) {
    if (!up.upsert && store.objects.has(`${up.bucket}/${up.name}`)) {
      writeJsonAtomic(store.tusPath(id, '.json'), up)
      throw E.keyExists()
    }
    const joined = crypto.createHash('md5').update(Buffer.concat(up.parts.map((h) => Buffer.from(h, 'hex')))).digest('hex')
    store.commit(up.bucket, up.name, part, {
      size: up.size, mimetype: up.contentType, cacheControl: up.cacheControl,
      eTag: `"${joined}-${up.parts.length}"`, userMetadata: up.userMetadata, owner: up.owner,
    })
    up.done = true
    extra = { ...extra, 'Tus-Complete': '1' }
  }
  writeJsonAtomic(store.tusPath(id, '.json'), up)
  if (res.destroyed) return
  return tusReply(res, okStatus, { 'Upload-Offset': String(up.offset), 'Upload-Expires': new Date(up.expires).toUTCString(), ...extra })
}

// ---------------------------------------------------------------- server
function handler(store, opts) {
  return async (req, res) => {
    const ctx = { req, res, store, opts, claims: null }
    try {
      ctx.url = new URL(req.url, 'http://localhost')
      const prefix = '/storage/v1/'
      if (!ctx.url.pathname.startsWith(prefix)) throw E.noRoute(req)
      let p
      try { p = decodeURIComponent(ctx.url.pathname.slice(prefix.length)) } catch { throw E.noRoute(req) }
      if (p === 'upload/resumable' || p === 'upload/resumable/' || p.startsWith('upload/resumable/')) {
        const id = p.slice('upload/resumable/'.length) || ''
        return await tusRoute(ctx, req.method, id)
      }
      return await restRoute(ctx, req.method, p)
    } catch (e) {
      sendError(res, e)
    } finally {
      // Never leave a half-read request body behind (keeps keep-alive connections sane).
      if (!req.complete) req.resume()
    }
  }
}

function main() {
  const opts = parseArgs(process.argv)
  if (opts.printServiceKey) {
    const iat = Math.floor(Date.now() / 1000)
    process.stdout.write(signJwt({ iss: 'supabase-standin', role: 'service_role', iat, exp: iat + 10 * 365 * 86400 }, opts.jwtSecret) + '\n')
    return
  }
  // Given keys must be JWTs this server accepts; catching a mismatch here beats 400s later.
  for (const k of opts.keys || []) verifyJwt(k, opts.jwtSecret)
  const store = new Store(opts.root)
  fs.rmSync(path.join(store.root, 'tmp'), { recursive: true, force: true })
  fs.mkdirSync(path.join(store.root, 'tmp'))
  const server = http.createServer(handler(store, opts))
  server.requestTimeout = 0 // GiB uploads may legitimately take long
  server.listen(opts.port, '127.0.0.1', () => {
    process.stdout.write(`LISTENING ${server.address().port}\n`)
  })
  const stop = () => { server.close(); server.closeAllConnections(); process.exit(0) }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

main()
