#!/usr/bin/env node
// Checks Prometheus text exposition (format 0.0.4, what services/metrics renders for
// /metrics) read on stdin with real parsers rather than our own idea of the format, and
// prints the parsed families as JSON on stdout so a test can check what was understood.
//
// Two checkers, both required:
// - `promtool check metrics` (Debian's prometheus package): the reference parser that
//   Prometheus's client libraries and promtool share (prometheus/common expfmt), which
//   rejects anything a scrape would (bad names, escapes, values, timestamps, invalid UTF-8,
//   a family's HELP or TYPE twice, a missing final newline) and then lints (counters end in
//   _total, every family has HELP, base units). Lint problems fail too, unless --allow-lint.
// - parse-prometheus-text-format (npm, pinned in package.json next to this file), whose
//   output has prom2json's shape: [{name, help, type, metrics: [{labels, value} | {buckets,
//   count, sum}]}]. It is lenient (it does not check names or values) and it merges the
//   series of a histogram that has labels other than le into one: count a histogram's
//   series from the text, not from this JSON.
//
// Usage: node check_prometheus.mjs [--allow-lint] < metrics.txt
// Prints the JSON one family per line ("[", then `{"name":...}` lines joined by ",", then
// "]"), so a C++ test can count families without a JSON parser.
// Exit status: 0 parsed; 1 rejected (why on stderr); 2 a checker is not installed (run
// tools/install-deps.sh), so callers can tell a broken text from a missing tool.

import { spawnSync } from 'node:child_process'
import fs from 'node:fs'

const args = process.argv.slice(2)
const allowLint = args.includes('--allow-lint')
const unknown = args.filter((a) => a !== '--allow-lint')
if (unknown.length > 0) {
  console.error(`check_prometheus: unknown arguments ${unknown.join(' ')}`)
  process.exit(1)
}

function reject(why) {
  console.error(`check_prometheus: rejected: ${why}`)
  process.exit(1)
}

function missing(what) {
  console.error(`check_prometheus: ${what} is not installed (tools/install-deps.sh installs it)`)
  process.exit(2)
}

const input = fs.readFileSync(0)

const promtool = spawnSync('promtool', ['check', 'metrics'], { input, encoding: 'utf8' })
if (promtool.error) {
  if (promtool.error.code === 'ENOENT') missing('promtool (Debian package prometheus)')
  reject(`cannot run promtool: ${promtool.error.message}`)
}
const promtoolSaid = `${promtool.stdout}${promtool.stderr}`.trim()
// promtool check metrics: 0 clean, 3 parsed but with lint problems, 1 not parsed.
if (promtool.status === 3) {
  if (!allowLint) reject(`promtool lint: ${promtoolSaid}`)
} else if (promtool.status !== 0) {
  reject(`promtool (exit ${promtool.status ?? promtool.signal}): ${promtoolSaid}`)
}

let parse
try {
  parse = (await import('parse-prometheus-text-format')).default
} catch (e) {
  if (e.code === 'ERR_MODULE_NOT_FOUND') missing('parse-prometheus-text-format (npm ci in tests/node)')
  throw e
}

let families
try {
  families = parse(input.toString('utf8'))
} catch (e) {
  reject(`parse-prometheus-text-format: ${e.message}`)
}

const lines = families.map((f) => JSON.stringify(f))
process.stdout.write(lines.length === 0 ? '[]\n' : `[\n${lines.join(',\n')}\n]\n`)
