#!/usr/bin/env node
// Gearman worker written with the npm `gearman` package (node-gearman).
//
// usage: node worker.js HOST PORT FUNCTION MODE COUNT TIMEOUT_SECS [OUTFILE]
//
// addFunction(FUNCTION), then GRAB_JOB / PRE_SLEEP / NOOP as the package's README
// shows. Runs COUNT jobs and exits 0; exits 3 if TIMEOUT_SECS pass first.
// MODE:
//   reverse    sendWorkComplete with the reversed payload
// If OUTFILE is given, "started <payload>" / "done <payload>" lines are appended to it.
// stdout: "ready", then "job <handle> <payload>" per job, then "exit <jobs done>".
'use strict'
const fs = require('fs')
const gearman = require('gearman')

const args = process.argv.slice(2)
if (args.length !== 6 && args.length !== 7) {
  process.stderr.write('usage: node worker.js HOST PORT FUNCTION MODE COUNT TIMEOUT_SECS [OUTFILE]\n')
  process.exit(2)
}
const [host, port, func, mode, countArg, timeoutArg, outfile] = args
if (mode !== 'reverse') {
  process.stderr.write(`unknown mode ${mode}\n`)
  process.exit(2)
}
const count = Number(countArg)
const note = (line) => {
  if (outfile) fs.appendFileSync(outfile, line + '\n')
}

setTimeout(() => {
  console.log('timeout')
  process.exit(3)
}, Number(timeoutArg) * 1000).unref()

const worker = gearman(host, Number(port))
let done = 0
worker.on('error', (err) => {
  console.log(`error ${err.message}`)
  process.exit(1)
})
worker.on('JOB_ASSIGN', (job) => {
  const payload = job.payload.toString()
  console.log(`job ${job.handle} ${payload}`)
  note(`started ${payload}`)
  worker.sendWorkComplete(job.handle, payload.split('').reverse().join(''))
  done += 1
  note(`done ${payload}`)
  if (done >= count) {
    console.log(`exit ${done}`)
    // end() flushes the WORK_COMPLETE before the socket closes.
    worker.close()
    return
  }
  worker.grabJob()
})
worker.on('NO_JOB', () => worker.preSleep())
worker.on('NOOP', () => worker.grabJob())
worker.connect(() => {
  worker.setWorkerId('protocol-tests-node-worker')
  worker.addFunction(func)
  console.log('ready')
  worker.grabJob()
})
