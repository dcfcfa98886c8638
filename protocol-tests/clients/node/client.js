#!/usr/bin/env node
// Gearman client written with the npm `gearman` package (node-gearman).
//
// usage: node client.js HOST PORT MODE FUNCTION PAYLOAD
//   normal      submitJob in the foreground; prints "created=<handle>" (JOB_CREATED),
//               then "result=<WORK_COMPLETE payload>" ("data=..." for any WORK_DATA,
//               "fail" for WORK_FAIL)
//   background  submitJob({background: true}); prints "handle=<handle>"
// Exit status 0 on success, 1 on a socket error, 3 after 12 s without an answer.
'use strict'
const gearman = require('gearman')

const args = process.argv.slice(2)
if (args.length !== 5) {
  process.stderr.write('usage: node client.js HOST PORT MODE FUNCTION PAYLOAD\n')
  process.exit(2)
}
const [host, port, mode, func, payload] = args
if (mode !== 'normal' && mode !== 'background') {
  process.stderr.write(`unknown mode ${mode}\n`)
  process.exit(2)
}

const timer = setTimeout(() => {
  console.log('timeout')
  process.exit(3)
}, 12000)

const client = gearman(host, Number(port))
const finish = (rc) => {
  clearTimeout(timer)
  client.close()
  process.exitCode = rc
}
client.on('error', (err) => {
  console.log(`error ${err.message}`)
  clearTimeout(timer)
  process.exit(1)
})
client.on('JOB_CREATED', (handle) => {
  if (mode === 'background') {
    console.log(`handle=${handle}`)
    finish(0)
  } else {
    console.log(`created=${handle}`)
  }
})
client.on('WORK_DATA', (job) => console.log(`data=${job.payload.toString()}`))
client.on('WORK_FAIL', () => {
  console.log('fail')
  finish(0)
})
client.on('WORK_COMPLETE', (job) => {
  console.log(`result=${job.payload.toString()}`)
  finish(0)
})
client.connect(() => {
  client.submitJob(func, payload, { background: mode === 'background' })
})
